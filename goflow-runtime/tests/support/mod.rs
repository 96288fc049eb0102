//! Makes a test binary act as a goflow binary, for the tests whose
//! executors start real processes (or pods): the executor re-runs the test
//! binary as `<test binary> --exact <entry> --nocapture -- <goflow args>`
//! with [`WORKER_ENV`] set, and the `#[test] fn <entry>` calls
//! [`act_as_goflow_binary`], which runs those goflow args and exits.

#![allow(dead_code)]

use std::process::ExitCode;

use chrono::Utc;
use clap::Parser;
use goflow_runtime::cli::{run, Cli};
use goflow_runtime::Registry;

/// Set in the environment of a test binary re-run as a goflow binary.
pub const WORKER_ENV: &str = "GOFLOW_TEST_WORKER";

/// The arguments that make libtest run only the test `entry`; goflow's own
/// arguments follow them.
pub fn entry_args(entry: &str) -> Vec<String> {
    ["--exact", entry, "--nocapture", "--"]
        .map(str::to_owned)
        .to_vec()
}

/// Returns at once in a normal test run. In a process started with
/// [`WORKER_ENV`], runs the goflow command line given after `--` with the
/// DAGs of `registry`, like a goflow binary's `main`, and exits with its
/// code.
pub fn act_as_goflow_binary(registry: impl FnOnce() -> Registry) {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    let args = std::env::args().skip_while(|a| a != "--").skip(1);
    let cli = match Cli::try_parse_from(std::iter::once("goflow".to_owned()).chain(args)) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let registry = registry();
    let _telemetry = goflow_runtime::cli::init_tracing_for(&cli);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut out = std::io::stdout();
    let code = match runtime.block_on(run(cli, &registry, &mut out, Utc::now())) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(exit_number(code));
}

/// The number behind an `ExitCode` goflow returns (0, 1 or 2).
pub fn exit_number(code: ExitCode) -> i32 {
    (0..=2u8)
        .find(|&n| ExitCode::from(n) == code)
        .map_or(101, i32::from)
}
