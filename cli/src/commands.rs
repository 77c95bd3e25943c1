//! Client subcommands: they talk to a running appliance through the store API.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::Value;
use tinkerbell_admin::apply::{self, ApplyErrors, DocError};

use tinkerbell_core::store::{Backend, Kind, Object};

use crate::output;
use crate::{Global, OutputFormat};

/// The data directory: the flag, else a per-user or system default.
pub fn data_dir(g: &Global) -> anyhow::Result<PathBuf> {
    Ok(g.store.data_dir()?)
}

/// Connect to the store: the appliance's store API, or Kubernetes with `--backend kube`.
pub async fn connect(g: &Global) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(g.store.connection()?.connect().await?)
}

fn parse_kind(s: &str) -> anyhow::Result<Kind> {
    Kind::parse(s).with_context(|| {
        format!("unknown kind {s:?} (hardware/hw, template/tpl, workflow/wf, machine, job, task, secret)")
    })
}

fn read_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading stdin")?;
    Ok(s)
}

/// Read every source: files, directories (sorted *.yaml, *.yml, *.json) and `-`.
fn read_sources(files: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for f in files {
        if f == "-" {
            out.push(("-".to_string(), read_stdin()?));
            continue;
        }
        let p = Path::new(f);
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading directory {f}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            entries.sort();
            if entries.is_empty() {
                bail!("directory {f} has no .yaml, .yml or .json files");
            }
            for e in entries {
                let s = std::fs::read_to_string(&e)
                    .with_context(|| format!("reading {}", e.display()))?;
                out.push((e.display().to_string(), s));
            }
        } else {
            let s = std::fs::read_to_string(p).with_context(|| format!("reading {f}"))?;
            out.push((f.clone(), s));
        }
    }
    Ok(out)
}

/// `apply` (status ignored, as kubectl does) and `import` (status kept).
pub async fn apply(g: &Global, files: &[String], keep_status: bool) -> anyhow::Result<()> {
    let sources = read_sources(files)?;
    let mut docs = Vec::new();
    let mut errors: Vec<DocError> = Vec::new();
    for (name, text) in &sources {
        match apply::parse_documents(name, text, &g.namespace) {
            Ok(d) => docs.extend(d),
            Err(ApplyErrors(e)) => errors.extend(e),
        }
    }
    if errors.is_empty()
        && let Err(ApplyErrors(e)) = apply::check_batch(&docs)
    {
        errors.extend(e);
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{e}");
        }
        bail!("{} problem(s) found; nothing was applied", errors.len());
    }
    if docs.is_empty() {
        bail!("no objects found in {}", files.join(", "));
    }
    let mut objects = Vec::with_capacity(docs.len());
    for d in docs {
        let o = if keep_status {
            d.object
        } else {
            d.object.with_status_json(Value::Null)?
        };
        objects.push(o);
    }
    let store = connect(g).await?;
    let results = store
        .apply_all(objects)
        .await
        .map_err(|e| anyhow::Error::new(e).context("nothing was applied"))?;
    for (o, applied) in results {
        println!("{} {applied}", output::qualified_name(&o));
    }
    Ok(())
}

/// `get` options.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Kind: hardware (hw), template (tpl), workflow (wf), machine, job, task, secret.
    kind: String,
    /// Object name; all objects when omitted.
    name: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum)]
    output: Option<OutputFormat>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Print Secret data instead of redacting it.
    #[arg(long)]
    show_secrets: bool,
}

pub async fn get(g: &Global, args: &GetArgs) -> anyhow::Result<()> {
    let kind = parse_kind(&args.kind)?;
    let all = args.all_namespaces;
    let store = connect(g).await?;
    let items = match &args.name {
        Some(n) => vec![store.get(kind, &g.namespace, n).await?],
        None => {
            let ns = (!all).then_some(g.namespace.as_str());
            store.list(kind, ns).await?.items
        }
    };
    let items: Vec<Object> = if args.show_secrets {
        items
    } else {
        items.iter().map(output::redact).collect()
    };
    match args.output {
        Some(format @ (OutputFormat::Yaml | OutputFormat::Json)) => {
            let v = if args.name.is_some() {
                items[0].to_json()
            } else {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": items.iter().map(Object::to_json).collect::<Vec<_>>(),
                })
            };
            if matches!(format, OutputFormat::Json) {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", output::yaml(&v)?);
            }
        }
        Some(OutputFormat::Wide) => {
            print!("{}", output::table(kind, &items, true, all))
        }
        None => {
            if items.is_empty() {
                eprintln!(
                    "No {} found in namespace {}.",
                    kind.plural(),
                    if all { "(any)" } else { &g.namespace }
                );
            } else {
                print!("{}", output::table(kind, &items, false, all));
            }
        }
    }
    Ok(())
}

pub async fn delete(g: &Global, kind: &str, name: &str) -> anyhow::Result<()> {
    let kind = parse_kind(kind)?;
    let store = connect(g).await?;
    let o = store.delete(kind, &g.namespace, name, None).await?;
    println!("{} deleted", output::qualified_name(&o));
    Ok(())
}

pub async fn hardware_import(g: &Global, csv: &str, dry_run: bool) -> anyhow::Result<()> {
    let text = if csv == "-" {
        read_stdin()?
    } else {
        std::fs::read_to_string(csv).with_context(|| format!("reading {csv}"))?
    };
    let parsed = match tinkerbell_admin::csv::parse_hardware_csv(&text, &g.namespace) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{csv}: {e}");
            }
            bail!(
                "{} problem(s) in {csv}; nothing was imported",
                errors.0.len()
            );
        }
    };
    if dry_run {
        for o in &parsed.objects {
            println!("{} (dry run)", output::qualified_name(o));
        }
        return Ok(());
    }
    let store = connect(g).await?;
    let results = store
        .apply_all(parsed.objects)
        .await
        .map_err(|e| anyhow::Error::new(e).context("nothing was imported"))?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (o, applied) in &results {
        *counts.entry(format!("{} {applied}", o.kind())).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("imported {} rows: {}", parsed.rows, summary.join(", "));
    Ok(())
}

pub async fn export(g: &Global, file: Option<&Path>, show_secrets: bool) -> anyhow::Result<()> {
    let store = connect(g).await?;
    let mut docs = String::new();
    let mut skipped = 0usize;
    let mut total = 0usize;
    for kind in Kind::ALL {
        if kind == Kind::Secret && !show_secrets {
            skipped = store.list(kind, None).await?.items.len();
            continue;
        }
        for o in store.list(kind, None).await?.items {
            let mut v = o.to_json();
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                // Server-owned and meaningless in another store.
                meta.remove("resourceVersion");
                meta.remove("managedFields");
            }
            docs.push_str("---\n");
            docs.push_str(&output::yaml(&v)?);
            total += 1;
        }
    }
    match file {
        Some(f) => {
            // It may hold BMC credentials (--show-secrets): 0600 whatever the umask.
            tinkerbell_core::private_files::write(f, docs.as_bytes())
                .with_context(|| format!("writing {}", f.display()))?;
            eprintln!("exported {total} objects to {}", f.display());
        }
        None => print!("{docs}"),
    }
    if skipped > 0 {
        eprintln!("{skipped} Secret(s) left out; pass --show-secrets to include BMC credentials");
    }
    Ok(())
}
