//! The binary of a crate that depends on goflow as `flow` runs its DAG.

use std::process::Command;

#[test]
fn a_dag_of_a_crate_that_renamed_goflow_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_goflow-renamed-dependency"))
        .args(["dags", "test", "renamed", "--date", "2026-05-02"])
        .output()
        .expect("the binary starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("dag renamed  run test__2026-05-02T00:00:00Z"),
        "{stdout}"
    );
    for task in ["readings", "avg", "report"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().take(2).eq([task, "success"])),
            "{task}: {stdout}"
        );
    }
}
