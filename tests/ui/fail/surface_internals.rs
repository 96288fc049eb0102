//! goflow's internals are not its public API: the runtime's CLI, the
//! scheduler's innards and the macros' plumbing are out of reach.

use goflow::runtime::cli::Cli;
use goflow::DagBuilder;
use goflow::model::Inputs;

fn main() {}
