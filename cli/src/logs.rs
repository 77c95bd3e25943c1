//! `tinkerbell logs HARDWARE`: what a machine sent to boots' syslog receiver, read through the
//! running appliance's HTTP route `GET /tinkerbell/v1/logs/<name>` (token: the reader token,
//! `<data-dir>/reader-token`).

use anyhow::Context;
use clap::Args;
use serde_json::Value;
use tinkerbell_core::api::token;

use crate::Global;
use crate::commands::data_dir;
use crate::serve::HTTP_URL_FILE;

/// `logs` options.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Hardware name (or the sender's IP address for machines without a Hardware).
    pub hardware: String,
    /// Only the newest N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Print the stored entries as JSON.
    #[arg(long)]
    pub json: bool,
    /// URL of the appliance's HTTP listener. Default: <data-dir>/http-url, else
    /// http://127.0.0.1:7080.
    #[arg(long, env = "TINKERBELL_HTTP_URL")]
    pub http_url: Option<String>,
}

pub async fn run(g: &Global, args: &LogsArgs) -> anyhow::Result<()> {
    let mut path = format!(
        "/tinkerbell/v1/logs/{}?namespace={}",
        args.hardware, g.namespace
    );
    if let Some(n) = args.tail {
        path.push_str(&format!("&limit={n}"));
    }
    let (url, status, body) = get(g, args.http_url.as_deref(), &path).await?;
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status == reqwest::StatusCode::NOT_FOUND {
        anyhow::bail!(
            "no logs for {:?} (has it sent any syslog to this appliance?)",
            args.hardware
        );
    }
    if !status.is_success() {
        anyhow::bail!(
            "GET {url}: {status} {}",
            body["error"].as_str().unwrap_or("")
        );
    }
    let lines = body.as_array().cloned().unwrap_or_default();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    for l in &lines {
        println!("{}", format_line(l));
    }
    Ok(())
}

/// GET `path` from the appliance's HTTP listener (see [`http_base_and_token`]) with the reader
/// token: the URL, the status and the body.
pub(crate) async fn get(
    g: &Global,
    http_url: Option<&str>,
    path: &str,
) -> anyhow::Result<(String, reqwest::StatusCode, String)> {
    let (base, tok) = http_base_and_token(g, http_url)?;
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let client = reqwest::Client::builder().build().context("HTTP client")?;
    let resp = client
        .get(&url)
        .bearer_auth(&tok)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    Ok((url, status, resp.text().await.unwrap_or_default()))
}

/// The appliance's HTTP listener (`--http-url`, else `<data-dir>/http-url`, else
/// http://127.0.0.1:7080) and the store API token its read routes require.
fn http_base_and_token(g: &Global, http_url: Option<&str>) -> anyhow::Result<(String, String)> {
    let dir = data_dir(g)?;
    let base = match http_url {
        Some(u) => u.to_string(),
        None => std::fs::read_to_string(dir.join(HTTP_URL_FILE))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "http://127.0.0.1:7080".to_string()),
    };
    let tok = match &g.store.token_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_string(),
        None => token::load_named(&dir, token::READER_FILE_NAME).with_context(|| {
            format!(
                "no reader token in {} (or pass --token-file)",
                dir.display()
            )
        })?,
    };
    Ok((base, tok))
}

/// `<received> <severity> <hostname> <app>[<procid>]: <message>`.
fn format_line(l: &Value) -> String {
    let s = |k: &str| l[k].as_str().unwrap_or("-");
    let app = match l["procid"].as_str() {
        Some(p) => format!("{}[{p}]", s("app")),
        None => s("app").to_string(),
    };
    format!(
        "{} {:<7} {} {}: {}",
        s("received"),
        s("severity"),
        s("hostname"),
        app,
        s("message")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_a_line() {
        let v = serde_json::json!({"received": "2026-01-01T00:00:00Z", "severity": "info",
            "hostname": "node1", "app": "tink-agent", "procid": "42", "message": "hello"});
        assert_eq!(
            format_line(&v),
            "2026-01-01T00:00:00Z info    node1 tink-agent[42]: hello"
        );
    }
}
