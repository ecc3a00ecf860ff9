//! `lookout bench promqltest`: runs PromQL test files in Prometheus's format through lookout's engine
//! and reports, per file, the evaluations that agree, disagree, and need native histograms.

use std::path::{Path, PathBuf};

use lookout_collector::query::promql::{testfile, Engine};

/// `delayed_name_removal`: as Prometheus's test engine runs these files.
pub fn run(paths: &[PathBuf], verbose: bool, delayed_name_removal: bool) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    anyhow::ensure!(!files.is_empty(), "no .test files under {}", paths_list(paths));
    let engine = Engine { delayed_name_removal, ..Engine::default() };
    println!(
        "delayed name removal: {}",
        if delayed_name_removal { "on, as Prometheus's test engine" } else { "off, as a Prometheus server by default" }
    );
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    println!("{:<28} {:>8} {:>8} {:>8} {:>9}", "file", "agree", "differ", "skipped", "agreement");
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?;
        // Deep expressions recurse in the parser and the engine: a query thread's stack.
        let report = lookout_collector::query::runner::on_query_stack(|| testfile::run(&engine, &text));
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        println!(
            "{:<28} {:>8} {:>8} {:>8} {:>8.1}%",
            name,
            report.passed,
            report.failures.len(),
            report.skipped,
            percent(report.passed, report.evaluated())
        );
        if verbose {
            for fail in &report.failures {
                println!("  {name}:{}: {}\n      {}", fail.line, fail.query, fail.why);
            }
        }
        passed += report.passed;
        failed += report.failures.len();
        skipped += report.skipped;
    }
    println!("{:<28} {:>8} {:>8} {:>8} {:>8.1}%", "all", passed, failed, skipped, percent(passed, passed + failed));
    println!("(skipped: evaluations that need native histograms; eval_warn must give a warning, eval_info an info, eval none)");
    Ok(())
}

fn percent(a: usize, b: usize) -> f64 {
    if b == 0 {
        100.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|e| e.extension().is_some_and(|x| x == "test"))
            .collect();
        entries.sort();
        out.extend(entries);
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

fn paths_list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
