//! `tinkerbell timeline MACHINE`: when each provisioning phase of a machine happened (BMC
//! power-on, DHCP, TFTP, iPXE script, kernel and initramfs, worker, each action, reboot, first
//! metadata read), read from the running appliance's `GET /tinkerbell/v1/timeline/<name>`
//! (token: the reader token). The events live in the appliance's memory
//! ([`tinkerbell_core::timeline`]); a restart starts a new timeline.

use anyhow::Context;
use clap::Args;
use tinkerbell_core::timeline::{Event, TIMELINE_PATH};

use crate::Global;
use crate::logs;

/// `timeline` options.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// Hardware name.
    pub hardware: String,
    /// Print the events as JSON.
    #[arg(long)]
    pub json: bool,
    /// URL of the appliance's HTTP listener. Default: <data-dir>/http-url, else
    /// http://127.0.0.1:7080.
    #[arg(long, env = "TINKERBELL_HTTP_URL")]
    pub http_url: Option<String>,
}

pub async fn run(g: &Global, args: &TimelineArgs) -> anyhow::Result<()> {
    let path = format!(
        "{TIMELINE_PATH}/{}?namespace={}",
        args.hardware, g.namespace
    );
    let (url, status, body) = logs::get(g, args.http_url.as_deref(), &path).await?;
    if !status.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        anyhow::bail!("GET {url}: {status} {msg}");
    }
    let events: Vec<Event> =
        serde_json::from_str(&body).with_context(|| format!("GET {url}: not a timeline"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(());
    }
    if events.is_empty() {
        println!(
            "no events for {}/{} yet (the timeline starts when the appliance does)",
            g.namespace, args.hardware
        );
        return Ok(());
    }
    print!("{}", render(&events));
    Ok(())
}

/// One line per event: time, seconds since the first event, seconds since the previous one,
/// phase, source, detail.
fn render(events: &[Event]) -> String {
    let mut out = format!(
        "{:<30} {:>9} {:>8}  {:<18} {:<11} {}\n",
        "TIME", "+ELAPSED", "+STEP", "PHASE", "SOURCE", "DETAIL"
    );
    let first = events.first().map(|e| e.at_unix_nanos).unwrap_or(0);
    let mut prev = first;
    for e in events {
        let secs = |a: u128, b: u128| a.saturating_sub(b) as f64 / 1e9;
        out.push_str(&format!(
            "{:<30} {:>8.3}s {:>7.3}s  {:<18} {:<11} {}\n",
            e.at,
            secs(e.at_unix_nanos, first),
            secs(e.at_unix_nanos, prev),
            e.phase.as_str(),
            e.source,
            e.detail
        ));
        prev = e.at_unix_nanos;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinkerbell_core::timeline::{Phase, Subject};

    #[test]
    fn renders_elapsed_and_step() {
        let ev = |ns: u128, phase, detail: &str| Event {
            at: format!("t{ns}"),
            at_unix_nanos: ns,
            phase,
            subject: Subject::hardware("default", "m1"),
            source: "boots".into(),
            detail: detail.into(),
        };
        let out = render(&[
            ev(1_000_000_000, Phase::PowerOn, "on"),
            ev(3_500_000_000, Phase::DhcpOffer, "10.0.0.5"),
            ev(4_000_000_000, Phase::IpxeScript, "auto.ipxe"),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[2].contains("2.500s") && lines[2].contains("dhcp-offer"),
            "{out}"
        );
        assert!(
            lines[3].contains("3.000s") && lines[3].contains("0.500s"),
            "{out}"
        );
    }
}
