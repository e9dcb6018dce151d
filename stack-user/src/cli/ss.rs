//! `xstack ss`: the connections of a running instance, as `ss -tnoi`
//! shows the kernel's — queues, sequence progress, windows, congestion
//! state, RTT and the timers with the time left on each. Read over the
//! control socket (mode 0600: run it as the user that runs `xstack serve`,
//! or root).

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::runtime::control;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Interface of the instance (needed when several run).
    #[arg(long)]
    iface: Option<String>,
    /// Only connections in this state (ESTABLISHED, CLOSE_WAIT, ...).
    #[arg(long)]
    state: Option<String>,
    /// Print JSON instead of the ss-style listing.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: Args) -> Result<()> {
    let v = control::query_sockets(a.iface.as_deref()).context("reading connections")?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        bail!("{e}");
    }
    let want = a.state.as_deref().map(state_name).transpose()?;
    let list: Vec<&Value> = v["sockets"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|s| want.is_none_or(|w| s["state"] == w))
                .collect()
        })
        .unwrap_or_default();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", render(&list));
    }
    Ok(())
}

/// The state name `ss` prints for what the user typed (`established`,
/// `close-wait`, `CLOSE_WAIT`, `syn-recv`...).
fn state_name(typed: &str) -> Result<&'static str> {
    let t = typed.to_ascii_uppercase().replace('_', "-");
    let name = match t.as_str() {
        "ESTABLISHED" | "ESTAB" => "ESTAB",
        "SYN-SENT" => "SYN-SENT",
        "SYN-RECV" | "SYN-RECEIVED" => "SYN-RECV",
        "FIN-WAIT-1" | "FIN-WAIT1" => "FIN-WAIT-1",
        "FIN-WAIT-2" | "FIN-WAIT2" => "FIN-WAIT-2",
        "CLOSE-WAIT" => "CLOSE-WAIT",
        "CLOSING" => "CLOSING",
        "LAST-ACK" => "LAST-ACK",
        "LISTEN" => "LISTEN",
        _ => bail!(
            "unknown state {typed:?}; use one of established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, close-wait, closing, last-ack (TIME-WAIT entries are counted by `xstack stats`)"
        ),
    };
    Ok(name)
}

/// The listing: one `ss -tn` line per connection, then an indented line of
/// `tcp_info`-style fields (`ss -i`) with the running timers (`ss -o`).
pub fn render(list: &[&Value]) -> String {
    let mut out = format!(
        "{:<12} {:>7} {:>7} {:<22} {:<22} {}\n",
        "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Queue"
    );
    for s in list {
        let timers: Vec<String> = s["timers"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|t| format!("{},{}ms", t["name"].as_str().unwrap_or("?"), t["left_ms"]))
                    .collect()
            })
            .unwrap_or_default();
        let timers = if timers.is_empty() {
            String::new()
        } else {
            format!(" timer:({})", timers.join(" "))
        };
        out.push_str(&format!(
            "{:<12} {:>7} {:>7} {:<22} {:<22} q{}{timers}\n",
            s["state"].as_str().unwrap_or("?"),
            s["recv_q"],
            s["send_q"],
            s["local"].as_str().unwrap_or("?"),
            s["peer"].as_str().unwrap_or("?"),
            s["queue"],
        ));
        let flag = |k: &str, name: &str| {
            if s[k] == true {
                format!(" {name}")
            } else {
                String::new()
            }
        };
        let rtt = match s["rtt_ms"].as_f64() {
            Some(r) => format!("{r:.3}/{:.3}", s["rttvar_ms"].as_f64().unwrap_or(0.0)),
            None => "-".into(),
        };
        out.push_str(&format!(
            "\t{}{}{}{} wscale:{},{} rto:{:.0} backoff:{} retries:{} rtt:{rtt} mss:{} cwnd:{} ssthresh:{} bytes_sent:{} bytes_acked:{} bytes_received:{} unacked:{} notsent:{} snd_nxt:+{} dupacks:{} sacked_ranges:{} snd_wnd:{} max_snd_wnd:{} rcv_wnd:{} rcv_space:{} rcv_ooo:{} lastrcv:{}\n",
            flag("ts", "ts").trim_start(),
            flag("sack", "sack"),
            flag("recovery", "recovery"),
            flag("ack_pending", "ack_pending"),
            s["wscale"][0],
            s["wscale"][1],
            s["rto_ms"].as_f64().unwrap_or(0.0),
            s["backoff"],
            s["retries"],
            s["mss"],
            s["cwnd"],
            s["ssthresh"],
            s["bytes_sent"],
            s["bytes_acked"],
            s["bytes_received"],
            s["unacked"],
            s["notsent"],
            s["snd_nxt_off"],
            s["dupacks"],
            s["sacked_ranges"],
            s["snd_wnd"],
            s["max_snd_wnd"],
            s["rcv_wnd"],
            s["rcv_space"],
            s["rcv_ooo"],
            s["last_rcv_ms"],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_state_filter_takes_the_names_ss_takes_and_refuses_others() {
        assert_eq!(state_name("established").unwrap(), "ESTAB");
        assert_eq!(state_name("CLOSE_WAIT").unwrap(), "CLOSE-WAIT");
        assert_eq!(state_name("syn-recv").unwrap(), "SYN-RECV");
        let e = state_name("time-wait").unwrap_err().to_string();
        assert!(e.contains("xstack stats"), "{e}");
        assert!(state_name("bogus").is_err());
    }
}
