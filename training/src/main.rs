//! `signalbox-train` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use signalbox_train::TrainError;
use signalbox_train::ingest::llmrouter::{self, Split};
use signalbox_train::ingest::routellm::{Benchmark, ingest_benchmark};
use signalbox_train::ingest::wide::{WideSpec, ingest_wide};
use signalbox_train::ingest::{BadRowPolicy, IngestReport, service_logs};
use signalbox_train::pipeline::{self, DataArgs, ModelArgs, OutputArgs};
use signalbox_train::table::TableWriter;
use signalbox_train::{bundle, progress, shadow, synth};

#[derive(Parser)]
#[command(
    name = "signalbox-train",
    version,
    about = "Train and evaluate signalbox routing models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A public outcome data set (`--benchmark`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchmarkArg {
    /// RouteLLM MMLU (GPT-4 / Mixtral), from --data.
    Mmlu,
    /// RouteLLM GSM8K (GPT-4 / Mixtral), from --data.
    Gsm8k,
    /// LLMRouter: 9 models, 14 tasks, from --llmrouter-data; --split picks the publishers' split.
    Llmrouter,
}

#[derive(Clone, clap::Args)]
struct IngestArgs {
    /// RouteLLM data root (holds mmlu/ and gsm8k/).
    #[arg(long = "data", default_value = "../shared/datasets/routellm")]
    routellm: PathBuf,
    /// LLMRouter data root (holds queries_*.jsonl, scores_*.json, models.json).
    #[arg(long, default_value = "../shared/datasets/llmrouter")]
    llmrouter_data: PathBuf,
    /// Benchmarks to read (repeatable); none with --service-logs or --wide only.
    /// llmrouter: task = the query's task_name, quality = the score, cost_usd = the default
    /// token estimate: (input_price x characters / 4 + output_price x 200) / 1e6 with the
    /// model's prices in USD per 1M tokens from models.json (its 9 models have one price for
    /// both, so this is price x (characters / 4 + 200) / 1e6).
    #[arg(long = "benchmark", value_enum)]
    benchmarks: Vec<BenchmarkArg>,
    /// Which of the publishers' splits of --benchmark llmrouter to write: train, test, or all
    /// (both, as sources llmrouter/train and llmrouter/test). Write one table per split and
    /// give them to train/eval as --train/--test to keep the publishers' split.
    #[arg(long, value_enum, default_value_t = Split::All)]
    split: Split,
    /// Wide outcome matrix (.csv with a header, or .jsonl/.ndjson): one row per prompt, a
    /// column per model's quality (number in [0, 1] or boolean) and optionally per model's
    /// cost. Needs --quality-column; rows come from source wide/<file stem>.
    #[arg(long, value_name = "FILE")]
    wide: Option<PathBuf>,
    /// --wide: column holding the prompt.
    #[arg(long, default_value = "prompt", requires = "wide")]
    prompt_column: String,
    /// --wide: column holding the task (optional; empty cells: no task).
    #[arg(long, requires = "wide")]
    task_column: Option<String>,
    /// --wide: MODEL=COLUMN, the column holding MODEL's quality (repeatable, one per model).
    #[arg(long, value_name = "MODEL=COLUMN", requires = "wide")]
    quality_column: Vec<String>,
    /// --wide: MODEL=COLUMN, the column holding MODEL's cost in USD per call (repeatable).
    #[arg(long, value_name = "MODEL=COLUMN", requires = "wide")]
    cost_column: Vec<String>,
    /// --wide: MODEL=USD_PER_1M, MODEL's price per 1M tokens, for a model without
    /// --cost-column: cost_usd = price x (prompt characters / 4 + 200) / 1e6 (the default
    /// token estimate). A model with neither has no cost in the table.
    #[arg(long, value_name = "MODEL=USD_PER_1M", requires = "wide")]
    price: Vec<String>,
    /// Directory of service decision/outcome JSONL segments, or a glob pattern naming several
    /// (quoted, e.g. 'logs/replica-*'); repeatable. All the directories are joined as one log
    /// (an outcome finds its decision whichever replica logged either), each read once. A
    /// pattern that matches no directory is an error.
    #[arg(long = "service-logs", value_name = "DIR|PATTERN")]
    service_logs: Vec<PathBuf>,
    /// What to do with malformed rows.
    #[arg(long, value_enum, default_value_t = BadRowPolicy::Skip)]
    bad_rows: BadRowPolicy,
    /// Memory budget of the service-log join, in MB of decision logs per partition.
    #[arg(long, default_value_t = 64)]
    join_budget_mb: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Normalise outcome logs into the canonical table (Parquet).
    Ingest {
        #[command(flatten)]
        input: IngestArgs,
        /// Output table: .parquet, or .jsonl / .ndjson for JSON Lines.
        #[arg(long)]
        out: PathBuf,
    },
    /// Fit on the train split, evaluate on the test split, write a bundle.
    Train {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Bundle directory to write (e.g. models/routellm-mmlu).
        #[arg(long)]
        bundle: PathBuf,
    },
    /// Fit on the train split and report on the test split (no bundle), or with
    /// --bundle evaluate an existing bundle on --test.
    Eval {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Evaluate this existing bundle on --test instead of training.
        #[arg(long, requires = "test")]
        bundle: Option<PathBuf>,
        /// Repeat the seeded random split with seeds seed, seed+1, ... and summarise each
        /// router's metrics over the repeats (mean, standard deviation, range).
        #[arg(long, default_value_t = 1, conflicts_with = "bundle")]
        repeats: u64,
    },
    /// ingest -> train -> bundle -> report in one go, timed.
    Run {
        #[command(flatten)]
        input: IngestArgs,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Canonical table written on the way.
        #[arg(long)]
        table: PathBuf,
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 0.3)]
        test_fraction: f64,
    },
    /// Generate synthetic service logs (for scale tests).
    Synth {
        #[arg(long)]
        out: PathBuf,
        /// Outcome rows to write.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 100_000)]
        segment_rows: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Per-prompt featurization latency of a bundle (the service's hot path, minus ONNX).
    Latency {
        #[arg(long)]
        bundle: PathBuf,
        /// Canonical table whose prompts are featurized.
        #[arg(long)]
        table: PathBuf,
        #[arg(long, default_value_t = 5000)]
        prompts: usize,
    },
    /// Agreement and estimated quality/cost of live vs. shadow router decisions.
    Shadow {
        /// Directory of service decision/outcome JSONL segments, or a glob pattern naming
        /// several (quoted, e.g. 'logs/replica-*'); repeatable. All are read as one log.
        #[arg(long, required = true, value_name = "DIR|PATTERN")]
        logs: Vec<PathBuf>,
        #[arg(long)]
        report_json: Option<PathBuf>,
    },
}

fn ingest(input: &IngestArgs, out: &Path) -> Result<IngestReport, TrainError> {
    if input.benchmarks.is_empty() && input.service_logs.is_empty() && input.wide.is_none() {
        return Err(TrainError::Argument(
            "nothing to ingest: pass --benchmark, --wide and/or --service-logs".into(),
        ));
    }
    let wide = match &input.wide {
        Some(path) => Some((
            path,
            WideSpec::from_flags(
                &input.prompt_column,
                input.task_column.as_deref(),
                &input.quality_column,
                &input.cost_column,
                &input.price,
            )?,
        )),
        None => None,
    };
    // Patterns first: one that matches nothing fails before anything is written.
    let log_dirs = service_logs::expand_dirs("--service-logs", &input.service_logs)?;
    let mut writer = TableWriter::create(out)?;
    let mut report = IngestReport::default();
    let join = service_logs::JoinOptions {
        budget_bytes: input.join_budget_mb.max(1) << 20,
        temp_parent: None,
    };
    let bar = progress::bar(0, "ingesting");
    for &arg in &input.benchmarks {
        let b = match arg {
            BenchmarkArg::Mmlu => Benchmark::Mmlu,
            BenchmarkArg::Gsm8k => Benchmark::Gsm8k,
            BenchmarkArg::Llmrouter => {
                let files = input.split.names().len() as u64 * llmrouter::FILES_PER_SPLIT;
                bar.inc_length(files);
                llmrouter::ingest(
                    &input.llmrouter_data,
                    input.split,
                    &mut writer,
                    &mut report,
                    input.bad_rows,
                    &bar,
                )?;
                continue;
            }
        };
        bar.inc_length(
            signalbox_train::ingest::routellm::benchmark_files(&input.routellm, b)?.len() as u64,
        );
        ingest_benchmark(
            &input.routellm,
            b,
            &mut writer,
            &mut report,
            input.bad_rows,
            &bar,
        )?;
    }
    if let Some((path, spec)) = &wide {
        bar.set_message(format!("{}", path.display()));
        ingest_wide(path, spec, &mut writer, &mut report, input.bad_rows)?;
    }
    if !log_dirs.is_empty() {
        // One step per log segment (spend summaries beside them are not read).
        for dir in &log_dirs {
            let segments: u64 = ["decisions", "outcomes"]
                .iter()
                .map(|kind| {
                    signalbox_train::ingest::segment_files(dir, kind).map_or(0, |f| f.len() as u64)
                })
                .sum();
            bar.inc_length(segments);
        }
        service_logs::ingest_dirs_with(
            &log_dirs,
            &mut writer,
            &mut report,
            input.bad_rows,
            &bar,
            &join,
        )?;
    }
    bar.finish_and_clear();
    let n = writer.finish()?;
    report.rows_written = n;
    eprint!("{}", report.render(20));
    eprintln!("table: {}", out.display());
    Ok(report)
}

fn print_timings(t: &[(String, f64)]) {
    for (k, v) in t {
        eprintln!("  {k:<22} {v:>8.2} s");
    }
}

fn train_and_bundle(
    data: &DataArgs,
    model: &ModelArgs,
    output: &OutputArgs,
    bundle_dir: &Path,
) -> Result<Vec<(String, f64)>, TrainError> {
    let exp = pipeline::run_experiment(data, model, &output.title)?;
    let t = Instant::now();
    let name = bundle_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "bundle".into());
    let m = bundle::write(bundle_dir, &name, &exp)?;
    let mut timings = exp.timings.clone();
    timings.push(("write bundle".into(), t.elapsed().as_secs_f64()));
    pipeline::emit_reports(&[&exp.report], output)?;
    eprintln!(
        "bundle: {} ({} models, dim {}, {} train / {} test prompts)",
        bundle_dir.display(),
        m.models.len(),
        m.features.dim,
        exp.train.len(),
        exp.test.len()
    );
    Ok(timings)
}

fn eval_bundle(
    data: &DataArgs,
    model: &ModelArgs,
    output: &OutputArgs,
    dir: &Path,
) -> Result<(), TrainError> {
    let manifest = signalbox_features::BundleManifest::load(dir)?;
    let featurizer = signalbox_features::Featurizer::load_with(dir, &manifest.features)?;
    let linear = signalbox_train::onnx::read(&dir.join(&manifest.onnx.file))?;
    let test_path = data
        .test
        .as_ref()
        .ok_or_else(|| TrainError::Argument("--bundle needs --test".into()))?;
    let test = signalbox_train::dataset::Dataset::load(test_path)?.with_models(&linear.models);
    let prompts: Vec<&str> = test.prompts.iter().map(String::as_str).collect();
    let tasks: Vec<Option<&str>> = test.tasks.iter().map(Option::as_deref).collect();
    let bar = progress::bar(prompts.len() as u64, "featurizing test");
    let x = signalbox_train::featurize::featurize_all(&featurizer, &prompts, &tasks, &bar)?;
    bar.finish_and_clear();
    let probs = linear.predict_sparse(&x);
    let prompt_only_probs = pipeline::prompt_only_predictions(&featurizer, &linear, &x);
    let costs: Vec<f64> = manifest.models.iter().map(|m| m.cost).collect();
    let (strong, weak) = model.pair(&test, &costs);
    let rules = match &model.rules_config {
        Some(p) => Some(pipeline::rules_decisions(p, &test, &weak)?),
        None => None,
    };
    let report = signalbox_train::evaluate::evaluate(&signalbox_train::evaluate::EvalInput {
        title: output.title.clone(),
        test: &test,
        probs: &probs,
        prompt_only_probs: prompt_only_probs.as_deref(),
        costs: &costs,
        prompt_costs: signalbox_train::pipeline::prompt_costs(&test, &[]).as_deref(),
        strong: &strong,
        weak: &weak,
        rules: rules.as_deref(),
        quality_threshold: manifest.quality_threshold,
        seed: data.seed,
    })?;
    pipeline::emit_reports(&[&report], output)
}

fn run(cli: Cli) -> Result<(), TrainError> {
    let start = Instant::now();
    match cli.command {
        Command::Ingest { input, out } => {
            ingest(&input, &out)?;
        }
        Command::Train {
            data,
            model,
            output,
            bundle,
        } => {
            let t = train_and_bundle(&data, &model, &output, &bundle)?;
            eprintln!("summary:");
            print_timings(&t);
        }
        Command::Eval {
            data,
            model,
            output,
            bundle,
            repeats,
        } => match bundle {
            Some(dir) => eval_bundle(&data, &model, &output, &dir)?,
            None if repeats > 1 => {
                if data.table.is_none() {
                    return Err(TrainError::Argument(
                        "--repeats needs --table (a random split to repeat)".into(),
                    ));
                }
                let mut reports = Vec::new();
                for k in 0..repeats {
                    let seeded = DataArgs {
                        seed: data.seed + k,
                        ..data.clone()
                    };
                    let title = format!("{} (seed {})", output.title, seeded.seed);
                    reports.push(pipeline::run_experiment(&seeded, &model, &title)?.report);
                }
                let refs: Vec<&signalbox_train::evaluate::EvalReport> = reports.iter().collect();
                pipeline::emit_reports(&refs, &output)?;
                println!("{}", signalbox_train::report::repeats_summary(&refs));
            }
            None => {
                let exp = pipeline::run_experiment(&data, &model, &output.title)?;
                pipeline::emit_reports(&[&exp.report], &output)?;
                eprintln!("summary:");
                print_timings(&exp.timings);
            }
        },
        Command::Run {
            input,
            model,
            output,
            table,
            bundle,
            seed,
            test_fraction,
        } => {
            let t = Instant::now();
            ingest(&input, &table)?;
            let ingest_s = t.elapsed().as_secs_f64();
            let data = DataArgs {
                table: Some(table),
                train: None,
                test: None,
                seed,
                test_fraction,
            };
            let mut timings = vec![("ingest".to_string(), ingest_s)];
            timings.extend(train_and_bundle(&data, &model, &output, &bundle)?);
            eprintln!("summary:");
            print_timings(&timings);
        }
        Command::Synth {
            out,
            rows,
            segment_rows,
            seed,
        } => {
            let (d, o) = synth::generate(&out, rows, segment_rows, seed)?;
            eprintln!(
                "synthetic logs: {d} decisions, {o} outcome rows in {}",
                out.display()
            );
        }
        Command::Latency {
            bundle,
            table,
            prompts,
        } => {
            let f = signalbox_features::Featurizer::load(&bundle)?;
            let ds = signalbox_train::dataset::Dataset::load(&table)?;
            let mut out = vec![0.0f32; f.dim()];
            let mut times = Vec::new();
            let rows = ds.prompts.iter().zip(&ds.tasks).cycle();
            for (p, task) in rows.take(prompts.min(ds.len() * 4)) {
                let t = Instant::now();
                f.featurize_into(p, task.as_deref(), &mut out)?;
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
            times.sort_by(f64::total_cmp);
            let q = |x: f64| times[((times.len() - 1) as f64 * x) as usize];
            let max_len = ds.prompts.iter().map(String::len).max().unwrap_or(0);
            println!(
                "featurize_into over {} prompts (longest {} bytes): p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us",
                times.len(),
                max_len,
                q(0.5),
                q(0.9),
                q(0.99),
                q(1.0)
            );
        }
        Command::Shadow { logs, report_json } => {
            let r = shadow::run_dirs(&service_logs::expand_dirs("--logs", &logs)?)?;
            print!("{}", shadow::render(&r));
            if let Some(p) = report_json {
                std::fs::write(&p, serde_json::to_string_pretty(&r)? + "\n")
                    .map_err(TrainError::io(&p))?;
            }
        }
    }
    eprintln!("total: {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
