#!/usr/bin/env bash
# Build weight of goflow, as a user meets it (issue #13).
#
#   benches/build_weight.sh [GOFLOW_DIR]
#
# GOFLOW_DIR is the goflow checkout to measure (default: the one this script
# is in); e.g. `git archive HEAD | tar -x -C /tmp/before` to measure a
# commit. Everything is built in a scratch directory under $TMPDIR with its
# own target directory, deleted at the end (a full build is several GB).
#
# It measures, one build at a time:
#
# 1. a user crate: a 3-task DAG and `goflow::main!()`, depending on goflow
#    by path with default features, created as `cargo new` creates it (no
#    profile settings). Cold `cargo build`: CPU seconds (user + sys of
#    cargo and every rustc it ran, so a busy machine does not inflate
#    them), wall seconds, packages compiled (`Compiling` lines), and the
#    size of the debug binary;
# 2. the same, with the `[profile.dev]` settings the README recommends;
# 3. the rebuild after editing a task body (wall seconds; incremental, as
#    a user's `cargo build` is);
# 4. the README's first command cold: `cargo build -p goflow-quickstart`
#    (`cargo build --release --example quickstart` in a checkout from
#    before the quickstart was a package of its own): CPU, wall, packages;
# 5. the quickstart with `--release`, cold (not in an older checkout).
#
# SKIP=2,5 skips steps. Cargo and rustc settings from the environment
# (CARGO_INCREMENTAL, CARGO_PROFILE_*, RUSTFLAGS...) are cleared: the
# figures are those of a user's default set-up. goflow's own crates, path
# dependencies here, are built without incremental caches, as they would
# be from crates.io.
set -euo pipefail

goflow_dir="$(cd "${1:-$(dirname "$0")/..}" && pwd)"
skip=",${SKIP:-},"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/goflow-build-weight.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

for v in $(env | sed -n 's/^\(CARGO_PROFILE_[A-Z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset CARGO_INCREMENTAL CARGO_BUILD_JOBS CARGO_BUILD_RUSTFLAGS RUSTFLAGS RUSTC_WRAPPER \
    CARGO_BUILD_RUSTC_WRAPPER CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
export CARGO_TERM_COLOR=never

rows=()
row() { rows+=("$(printf '| %s | %s |' "$1" "$2")"); }

# timed LABEL DIR CMD...: runs CMD in DIR; sets cpu, wall and compiled.
timed() {
    local label="$1" dir="$2"
    shift 2
    echo "== $label: $*" >&2
    local log="$scratch/$label.log" times="$scratch/$label.time"
    if ! (cd "$dir" && /usr/bin/time -f '%U %S %e' -o "$times" "$@") >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "build_weight: $label failed" >&2
        exit 1
    fi
    local user_s sys_s
    read -r user_s sys_s wall <"$times"
    cpu="$(echo "$user_s + $sys_s" | bc)"
    compiled="$(grep -c '^ *Compiling ' "$log" || true)"
    echo "   cpu ${cpu}s, wall ${wall}s, ${compiled} compiled" >&2
}

mb() { echo "scale=1; $(stat -c %s "$1") / 1000000" | bc; }

# The user crate.
user="$scratch/user"
mkdir -p "$user/src"
cat >"$user/Cargo.toml" <<EOF
[package]
name = "weight"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
goflow = { path = "$goflow_dir" }
serde = { version = "1", features = ["derive"] }

# goflow's crates are path dependencies here: no incremental caches for
# them, as for a dependency from crates.io.
[profile.dev.package.goflow]
incremental = false
[profile.dev.package.goflow-core]
incremental = false
[profile.dev.package.goflow-macros]
incremental = false
[profile.dev.package.goflow-runtime]
incremental = false
[profile.dev.package.goflow-store]
incremental = false
EOF
if [ -d "$goflow_dir/goflow-syntax" ]; then
    printf '[profile.dev.package.goflow-syntax]\nincremental = false\n' >>"$user/Cargo.toml"
fi
cat >"$user/src/main.rs" <<'EOF'
use goflow::prelude::*;

#[derive(Serialize, Deserialize)]
struct Sale {
    region: String,
    amount: f64,
}

#[task(retries = 2, retry_delay = "10s")]
async fn extract() -> Result<Vec<Sale>, TaskError> {
    Ok(vec![Sale { region: "north".into(), amount: 12.5 }])
}

#[task]
fn total(sales: Vec<Sale>) -> f64 {
    let sum = sales.iter().map(|s| s.amount).sum();
    tracing::info!(sum, "EDIT-ME");
    sum
}

#[task(trigger_rule = "all_done")]
fn report(ctx: &TaskContext) {
    tracing::info!(run = %ctx.run_id(), "done");
}

#[dag(schedule = "0 6 * * *", tz = "Europe/Paris", start = "2026-01-01")]
fn weight() {
    let sales = extract();
    let sum = total(sales);
    report();
    sum >> report;
}

goflow::main!();
EOF
sed -i 's/tracing::info!/goflow::tracing::info!/' "$user/src/main.rs"
# The versions goflow is tested with.
cp "$goflow_dir/Cargo.lock" "$user/Cargo.lock"

if [[ $skip != *,1,* ]]; then
    export CARGO_TARGET_DIR="$scratch/target-user"
    timed user-cold "$user" cargo build
    row "user crate, cold \`cargo build\`: CPU" "${cpu} s"
    row "user crate, cold \`cargo build\`: wall" "${wall} s"
    row "user crate, cold \`cargo build\`: packages compiled" "$compiled"
    row "user crate, debug binary" "$(mb "$CARGO_TARGET_DIR/debug/weight") MB"
    if [[ $skip != *,3,* ]]; then
        # Edit a task body, as a user does: a new log message.
        sed -i "s/EDIT-ME/edited $(date +%s)/" "$user/src/main.rs"
        timed user-rebuild "$user" cargo build
        row "user crate, rebuild after editing a task body: wall" "${wall} s"
        row "user crate, rebuild after editing a task body: CPU" "${cpu} s"
    fi
    rm -rf "$CARGO_TARGET_DIR"
fi

if [[ $skip != *,2,* ]]; then
    cat >>"$user/Cargo.toml" <<'EOF'

# The README's recommended settings ("Build times").
[profile.dev]
debug = "line-tables-only"
[profile.dev.package."*"]
debug = false
EOF
    export CARGO_TARGET_DIR="$scratch/target-profile"
    timed user-profile-cold "$user" cargo build
    row "user crate + README's \`[profile.dev]\`, cold: CPU" "${cpu} s"
    row "user crate + README's \`[profile.dev]\`, cold: wall" "${wall} s"
    row "user crate + README's \`[profile.dev]\`, debug binary" "$(mb "$CARGO_TARGET_DIR/debug/weight") MB"
    if [[ $skip != *,3,* ]]; then
        sed -i "s/edited [0-9]*/edited again $(date +%s)/" "$user/src/main.rs"
        timed user-profile-rebuild "$user" cargo build
        row "user crate + README's \`[profile.dev]\`, rebuild after editing a task body: wall" "${wall} s"
    fi
    rm -rf "$CARGO_TARGET_DIR"
fi

new_quickstart=false
[ -f "$goflow_dir/examples/quickstart/Cargo.toml" ] && new_quickstart=true

if [[ $skip != *,4,* ]]; then
    export CARGO_TARGET_DIR="$scratch/target-quickstart"
    if $new_quickstart; then
        qs=(cargo build -p goflow-quickstart)
    else
        qs=(cargo build --release --example quickstart)
    fi
    timed quickstart "$goflow_dir" "${qs[@]}"
    row "README's first command cold (\`${qs[*]}\`): CPU" "${cpu} s"
    row "README's first command cold: wall" "${wall} s"
    row "README's first command cold: packages compiled" "$compiled"
    rm -rf "$CARGO_TARGET_DIR"
fi

if [[ $skip != *,5,* ]] && $new_quickstart; then
    export CARGO_TARGET_DIR="$scratch/target-quickstart-release"
    timed quickstart-release "$goflow_dir" cargo build --release -p goflow-quickstart
    row "quickstart \`--release\`, cold: CPU" "${cpu} s"
    row "quickstart \`--release\`, cold: wall" "${wall} s"
    rm -rf "$CARGO_TARGET_DIR"
fi

echo
echo "goflow: $goflow_dir ($(cd "$goflow_dir" && git rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'))"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(rustc --version); load: $(uptime | sed 's/.*load average: //')"
echo
echo "| measurement | value |"
echo "|---|---:|"
printf '%s\n' "${rows[@]}"
