//! A DAG in a crate that names goflow `flow`.

use flow::prelude::*;

#[derive(Serialize, Deserialize)]
struct Reading {
    sensor: String,
    value: f64,
}

#[task]
fn read() -> Vec<Reading> {
    vec![
        Reading {
            sensor: "a".into(),
            value: 1.5,
        },
        Reading {
            sensor: "b".into(),
            value: 2.5,
        },
    ]
}

#[task(retries = 1)]
fn mean(readings: Vec<Reading>) -> Result<f64, String> {
    if readings.is_empty() {
        return Err("no readings".into());
    }
    let sensors: Vec<&str> = readings.iter().map(|r| r.sensor.as_str()).collect();
    flow::tracing::info!(?sensors, "averaging");
    Ok(readings.iter().map(|r| r.value).sum::<f64>() / readings.len() as f64)
}

#[task]
fn report(ctx: &TaskContext, mean: f64) -> String {
    format!("{}: mean {mean}", ctx.ds())
}

#[dag(schedule = "@daily", start = "2026-01-01")]
fn renamed() {
    let readings = read();
    let avg = mean(readings);
    report(avg);
}

flow::main!();
