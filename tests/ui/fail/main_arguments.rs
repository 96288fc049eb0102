goflow::main!(dags = 3);
