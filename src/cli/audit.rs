//! `larder audit export` and `larder audit verify`: a party's audit trail as JSON lines, read
//! from its node with the auditors' token or from a stopped store, and the checks of
//! [`larder::audit::verify`] over one or every party's export.

use anyhow::{bail, Context, Result};
use larder::audit::{verify, Export};
use larder::store::Store;
use std::io::Write;
use std::path::Path;

/// Where an export is read from.
pub enum Source<'a> {
    /// A store on this machine whose node is stopped.
    Store(&'a Path),
    /// Party `party`'s node, with the auditors' token.
    Node {
        consortium: &'a Path,
        token_file: &'a Path,
        party: u8,
    },
}

/// Writes one party's trail to `out` (a file, or standard output for `-`).
pub async fn export(source: Source<'_>, out: &Path) -> Result<()> {
    let mut sink: Box<dyn Write> = if out == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
        ))
    };
    let records = match source {
        Source::Store(dir) => {
            let store = Store::open(dir)?;
            store.export_audit(0, u64::MAX, &mut sink)?
        }
        Source::Node {
            consortium,
            token_file,
            party,
        } => from_node(consortium, token_file, party, &mut sink).await?,
    };
    sink.flush()?;
    if out != Path::new("-") {
        eprintln!("{records} records written to {}", out.display());
    }
    Ok(())
}

/// Pages through `GET /v1/audit` at one party's node.
async fn from_node(
    consortium: &Path,
    token_file: &Path,
    party: u8,
    sink: &mut dyn Write,
) -> Result<u64> {
    let (cluster, http) = super::commands::consortium_client(consortium)?;
    let token = super::commands::read_token(token_file)?;
    let Some(node) = cluster.nodes().get(party as usize) else {
        bail!("the consortium has no party {party}");
    };
    let base = node.url.trim_end_matches('/');
    let mut from = 0u64;
    let mut written = 0u64;
    let mut header_done = false;
    loop {
        let text = super::commands::send_as(
            http.get(format!("{base}/v1/audit?from={from}")),
            &token,
            &format!("party {party} at {base}"),
        )
        .await?;
        let (head, records) = text.split_once('\n').unwrap_or((&text, ""));
        let header: larder::audit::ExportHeader =
            serde_json::from_str(head).context("the node's export header")?;
        if !header_done {
            writeln!(sink, "{head}")?;
            header_done = true;
        }
        let mut n = 0u64;
        for line in records.lines().filter(|l| !l.is_empty()) {
            writeln!(sink, "{line}")?;
            n += 1;
        }
        written += n;
        from = header.first + n;
        if n == 0 || from >= header.next {
            return Ok(written);
        }
    }
}

/// Checks the exports in `files` (one per party, any order); prints what was checked and
/// every problem, the first disagreement first. Fails if any.
pub fn verify_files(files: &[std::path::PathBuf]) -> Result<()> {
    let mut exports = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        exports.push(Export::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?);
    }
    let report = verify(&exports);
    for e in &exports {
        let h = &e.header;
        println!(
            "party {}: {} records ({}..{}), head {}",
            h.party,
            e.records.len(),
            h.first,
            h.next,
            &h.head[..16]
        );
    }
    println!(
        "witnessed heads found in the chains: {}{}",
        report.witnessed,
        if report.unverifiable > 0 {
            format!(
                " ({} fall before an export's first record)",
                report.unverifiable
            )
        } else {
            String::new()
        }
    );
    println!(
        "checkouts compared: {}; items handed out or burned: {}",
        report.checkouts, report.items_spent
    );
    if report.ok() {
        println!(
            "OK: every chain is intact{}",
            if exports.len() > 1 {
                " and the parties agree"
            } else {
                ""
            }
        );
        return Ok(());
    }
    println!("first disagreement: {}", report.problems[0]);
    for p in &report.problems[1..] {
        println!("also: {p}");
    }
    bail!("{} problem(s) found", report.problems.len())
}
