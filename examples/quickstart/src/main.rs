//! The quickstart: a daily sales report.
//!
//! `load_sales` reads the CSV this example ships (`data/sales.csv`, next to
//! its Cargo.toml), four `region_stats`
//! tasks summarize one region each in parallel (fan-out), `merge_report`
//! joins them (fan-in), `write_report` writes a Markdown report, and
//! `archive` runs last whatever happened.
//!
//! A package of its own (`goflow-quickstart`, a workspace member), so that
//! building it does not build the root's dev-dependencies. From the
//! repository's root:
//!
//! ```text
//! cargo run -p goflow-quickstart -- dags list
//! cargo run -p goflow-quickstart -- dags test daily-sales
//! cargo run -p goflow-quickstart -- dags test daily-sales --date 2026-01-07 \
//!     --conf '{"output_dir": "/tmp/reports"}'
//! ```

use std::path::{Path, PathBuf};

use goflow::prelude::*;
use goflow::tracing::{info, warn};

/// One line of `sales.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sale {
    order_id: u64,
    date: String,
    region: String,
    product: String,
    units: u32,
    unit_price: f64,
}

impl Sale {
    fn revenue(&self) -> f64 {
        f64::from(self.units) * self.unit_price
    }
}

/// What one region sold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionStats {
    region: String,
    orders: usize,
    units: u32,
    revenue: f64,
    average_order: f64,
    top_product: Option<String>,
}

/// The merged report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    day: String,
    regions: Vec<RegionStats>,
    total_revenue: f64,
    best_region: Option<String>,
}

/// The CSV this example ships, wherever the binary is run from: in
/// `data/` next to the quickstart's Cargo.toml. (The root package's tests
/// compile this file too, with `#[path]`; their `CARGO_MANIFEST_DIR` is
/// the repository's root.)
fn default_input() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let own = manifest_dir.join("data/sales.csv");
    if own.exists() {
        own
    } else {
        manifest_dir.join("examples/quickstart/data/sales.csv")
    }
}

/// Reads the sales export given as `input` in the conf (by default the CSV
/// this example ships). With `"only_logical_day": true` it keeps the
/// sales of the run's logical day only, and skips when there are none.
#[task(
    retries = 2,
    retry_delay = "2s",
    backoff = "exponential",
    timeout = "1m"
)]
async fn load_sales(ctx: &TaskContext) -> Result<Vec<Sale>, TaskError> {
    let input = ctx.param::<PathBuf>("input")?.unwrap_or_else(default_input);
    let text = tokio::fs::read_to_string(&input)
        .await
        .map_err(|e| TaskError::fatal(format!("cannot read {}: {e}", input.display())))?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut sales = Vec::new();
    for row in reader.deserialize::<Sale>() {
        sales.push(row.map_err(|e| TaskError::fatal(format!("{}: {e}", input.display())))?);
    }
    if ctx.param::<bool>("only_logical_day")?.unwrap_or(false) {
        let day = ctx
            .logical_date()
            .with_timezone(&chrono_tz::Europe::Paris)
            .date_naive()
            .to_string();
        sales.retain(|s| s.date == day);
        info!(day = %day, rows = sales.len(), "kept the sales of the logical day");
        if sales.is_empty() {
            return Err(TaskError::skip(format!(
                "no sales on {day} in {}",
                input.display()
            )));
        }
    }
    info!(rows = sales.len(), input = %input.display(), "read the sales file");
    Ok(sales)
}

/// Summarizes the sales of one region.
#[task(priority = 2)]
fn region_stats(sales: Vec<Sale>, region: String) -> RegionStats {
    let mine: Vec<&Sale> = sales.iter().filter(|s| s.region == region).collect();
    let revenue: f64 = mine.iter().map(|s| s.revenue()).sum();
    let mut by_product = std::collections::BTreeMap::<&str, f64>::new();
    for s in &mine {
        *by_product.entry(s.product.as_str()).or_default() += s.revenue();
    }
    let top_product = by_product
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(p, _)| p.to_owned());
    info!(region = %region, orders = mine.len(), revenue = format!("{revenue:.2}"), "region figures");
    if mine.is_empty() {
        warn!(region = %region, "no sales in this region");
    }
    RegionStats {
        orders: mine.len(),
        units: mine.iter().map(|s| s.units).sum(),
        average_order: if mine.is_empty() {
            0.0
        } else {
            revenue / mine.len() as f64
        },
        revenue,
        top_product,
        region,
    }
}

/// Joins the regions into one report.
#[task]
fn merge_report(
    ctx: &TaskContext,
    north: RegionStats,
    south: RegionStats,
    east: RegionStats,
    west: RegionStats,
) -> Report {
    let mut regions = vec![north, south, east, west];
    regions.sort_by(|a, b| b.revenue.total_cmp(&a.revenue));
    Report {
        day: ctx.logical_date().date_naive().to_string(),
        total_revenue: regions.iter().map(|r| r.revenue).sum(),
        best_region: regions
            .first()
            .filter(|r| r.revenue > 0.0)
            .map(|r| r.region.clone()),
        regions,
    }
}

/// Writes the report as Markdown into `output_dir` (conf), by default
/// `quickstart-output/` in the working directory. Returns the file's path.
#[task(timeout = "30s")]
async fn write_report(ctx: &TaskContext, report: Report) -> Result<String, TaskError> {
    let dir = ctx
        .param::<PathBuf>("output_dir")?
        .unwrap_or_else(|| PathBuf::from("quickstart-output"));
    tokio::fs::create_dir_all(&dir).await?;
    let mut md = format!("# Sales report for {}\n\n", report.day);
    md.push_str("| region | orders | units | revenue | average order | top product |\n");
    md.push_str("|---|---:|---:|---:|---:|---|\n");
    for r in &report.regions {
        md.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} | {} |\n",
            r.region,
            r.orders,
            r.units,
            r.revenue,
            r.average_order,
            r.top_product.as_deref().unwrap_or("-")
        ));
    }
    md.push_str(&format!("\nTotal revenue: {:.2}\n", report.total_revenue));
    let path = dir.join(format!("report-{}.md", report.day));
    tokio::fs::write(&path, md).await?;
    info!(path = %path.display(), total = format!("{:.2}", report.total_revenue), "wrote the report");
    Ok(path.display().to_string())
}

/// Runs last, whatever happened upstream (trigger rule `all_done`).
#[task(trigger_rule = "all_done")]
fn archive(ctx: &TaskContext) -> String {
    info!(run = %ctx.run_id(), "archived");
    format!("run {} of {} archived", ctx.run_id(), ctx.dag_id())
}

/// Daily sales per region, merged into a Markdown report.
#[dag(
    schedule = "0 6 * * *",
    tz = "Europe/Paris",
    start = "2026-01-01",
    catchup = false,
    max_active_runs = 1,
    tags = ["example", "sales"],
    defaults(retries = 1, retry_delay = "1s")
)]
fn daily_sales() {
    let sales = load_sales();
    let north = region_stats(sales, "north");
    let south = region_stats(sales, "south");
    let east = region_stats(sales, "east");
    let west = region_stats(sales, "west");
    let report = merge_report(north, south, east, west);
    let written = write_report(report);
    archive();
    written >> archive;
}

goflow::main!();
