//! The audit trail as evidence: each party's audit records form a hash chain, exported as JSON
//! lines; [`verify`] checks one party's chain and, given every party's export, that the parties
//! agree.
//!
//! # The chain (format `larder-audit-v1`)
//! Record `seq` (0, 1, 2, ... with no gaps) carries `prev`, the `hash` of record `seq - 1` (for
//! record 0, the party's genesis value, [`genesis`]), and its own `hash`: the hex SHA-256 of
//! `larder-audit-v1\n` followed by the record's canonical JSON without its `hash` field (keys
//! sorted, no white space, absent fields omitted; Python: `json.dumps(r, sort_keys=True,
//! separators=(",", ":"), ensure_ascii=False)`). Editing, dropping or reordering a record breaks
//! the links after it.
//!
//! A chain kept on one disk can still be rewritten whole by whoever holds that disk. So the
//! nodes witness each other: every call between nodes carries the caller's durable chain head
//! (how many records, and the last one's hash) and every answer the callee's, and each node
//! records the heads it sees (`witness` records, at most one per peer per second). The leader
//! witnesses every follower and every follower the leader. [`verify`] checks each party's chain
//! against the heads the others witnessed: a rewritten chain no longer has the records the
//! others saw.
//!
//! The rule for later versions: fields may be added only as optional fields left out when
//! absent, so that every hash written before stays valid.

use crate::material::{BatchId, PoolSpec, ShareRange};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The format's name, first in every hash and in the export's header line.
pub const FORMAT: &str = "larder-audit-v1";

/// A chain's head: how many records it has and the last one's hash (the genesis value when
/// it has none), as one party saw another's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub party: u8,
    pub next: u64,
    pub hash: String,
}

impl Head {
    /// `party:next:hash`.
    pub fn to_header(&self) -> String {
        format!("{}:{}:{}", self.party, self.next, self.hash)
    }

    /// Reads [`Head::to_header`]'s form; `None` if malformed.
    pub fn from_header(s: &str) -> Option<Head> {
        let mut it = s.splitn(3, ':');
        let party = it.next()?.parse().ok()?;
        let next = it.next()?.parse().ok()?;
        let hash = it.next()?;
        (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Head {
            party,
            next,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// The HTTP header that carries a node's [`Beacon`] on calls between nodes.
pub const HEAD_HEADER: &str = "larder-audit-head";

/// What a node tells the others on every call: its durable head, and which run of the node
/// reported it (when the store was opened, and how many records it had then). Calls overlap,
/// so heads of one run can arrive out of order; a run that starts with fewer records than an
/// earlier run reported durable has lost them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beacon {
    pub head: Head,
    /// When this run opened the store (Unix nanoseconds).
    pub boot: u64,
    /// Records the store had when this run opened it.
    pub opened: u64,
}

impl Beacon {
    /// `party:next:hash:boot:opened`.
    pub fn to_header(&self) -> String {
        format!("{}:{}:{}", self.head.to_header(), self.boot, self.opened)
    }

    /// Reads [`Beacon::to_header`]'s form; `None` if malformed.
    pub fn from_header(s: &str) -> Option<Beacon> {
        let mut it = s.rsplitn(3, ':');
        let opened = it.next()?.parse().ok()?;
        let boot = it.next()?.parse().ok()?;
        let head = Head::from_header(it.next()?)?;
        (opened <= head.next).then_some(Beacon { head, boot, opened })
    }
}

/// One audit record, as stored, archived and exported (one JSON line each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    #[serde(default)]
    pub seq: u64,
    /// Unix seconds.
    pub at: u64,
    /// `stage`, `activate`, `abort`, `exhaust`, `reserve`, `consume`, `release`, `burn`,
    /// `job-piece`, `job-piece-revoked`, `witness`; PRSS key epochs: `prss-keys` (this
    /// party stored its keys), `prss-epoch` (the leader made one current), `prss-retire`, and
    /// `retire` (a batch's unserved items burned with their epoch).
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<ShareRange>,
    /// The engine that downloaded, or the job and worker that made a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Another party's chain head, as this party saw it (`witness` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<Head>,
    /// The generator that made the batch, and so its trust model (`stage` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<crate::material::Maker>,
    /// The assumption the batch's material is secure under (`stage` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumption: Option<crate::material::Assumption>,
    #[serde(default)]
    pub prev: String,
    #[serde(default)]
    pub hash: String,
}

impl AuditRecord {
    /// A record of `event`, not chained yet.
    pub fn new(event: &str, at: u64) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at,
            event: event.to_string(),
            pool: None,
            checkout: None,
            batch: None,
            ranges: Vec::new(),
            by: None,
            witness: None,
            generator: None,
            assumption: None,
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// The hash this record must carry (see the module doc).
    pub fn digest(&self) -> String {
        let mut v = serde_json::to_value(self).expect("audit records serialize");
        if let serde_json::Value::Object(m) = &mut v {
            m.remove("hash");
        }
        let mut canonical = Vec::new();
        write_canonical(&v, &mut canonical);
        let mut h = Sha256::new();
        h.update(FORMAT.as_bytes());
        h.update(b"\n");
        h.update(&canonical);
        hex::encode(h.finalize())
    }

    /// The items this record says were handed out or destroyed here (`consume`, `burn`).
    fn spends(&self) -> bool {
        matches!(self.event.as_str(), "consume" | "burn")
    }
}

/// JSON with object keys sorted and no white space, whatever serde_json's map order.
fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            out.push(b'{');
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(k).expect("strings serialize"));
                out.push(b':');
                write_canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, out);
            }
            out.push(b']');
        }
        other => out.extend(serde_json::to_vec(other).expect("scalars serialize")),
    }
}

/// The `prev` of a party's record 0: binds the chain to its consortium and party.
pub fn genesis(consortium: &str, party: u8) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update(b" genesis\n");
    h.update(consortium.as_bytes());
    h.update(b"\n");
    h.update(party.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Where a chain stands: the next record's number and the last record's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tip {
    pub next: u64,
    pub hash: String,
}

impl Tip {
    /// Chains `rec` after this tip (sets its `seq`, `prev` and `hash`) and moves the tip on.
    pub fn append(&mut self, rec: &mut AuditRecord) {
        rec.seq = self.next;
        rec.prev = std::mem::take(&mut self.hash);
        rec.hash = rec.digest();
        self.next += 1;
        self.hash = rec.hash.clone();
    }
}

/// Says that another party came back with less than it had reported durable.
pub fn rolled_back(party: u8, reported: u64, now: &Beacon) {
    tracing::error!(
        party,
        records_reported = reported,
        records_at_restart = now.opened,
        "party {party} restarted with {} audit records after reporting {reported} durable: it \
         lost state (a store restored from a backup, or a disk that dropped writes); compare \
         the trails with `larder audit verify`",
        now.opened
    );
}

/// The first line of an export: whose chain follows and where it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub format: String,
    pub consortium: String,
    pub parties: u8,
    pub party: u8,
    /// The first record's number (above 0 once older records have passed their retention).
    pub first: u64,
    /// The chain's head when the export was made.
    pub next: u64,
    pub head: String,
}

/// One party's export, read back.
#[derive(Clone, Debug)]
pub struct Export {
    pub header: ExportHeader,
    pub records: Vec<AuditRecord>,
}

impl Export {
    /// Reads an export (JSON lines: the header, then the records in order).
    ///
    /// # Errors
    /// A line that is not JSON of the expected shape, naming the line.
    pub fn parse(text: &str) -> Result<Export, String> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = lines.next().ok_or("empty export: no header line")?;
        let header: ExportHeader =
            serde_json::from_str(first).map_err(|e| format!("line 1 (header): {e}"))?;
        if header.format != FORMAT {
            return Err(format!(
                "line 1: format {:?}, this larder reads {FORMAT:?}",
                header.format
            ));
        }
        let records = lines
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
            .collect::<Result<_, _>>()?;
        Ok(Export { header, records })
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every problem, in the order found (chains first, then witnesses, then agreement); the
    /// first is the first disagreement.
    pub problems: Vec<String>,
    /// Records checked, per party.
    pub records: BTreeMap<u8, u64>,
    /// Heads witnessed by another party and found in the chain.
    pub witnessed: u64,
    /// Witnessed heads that fall before an export's first record (removed by retention).
    pub unverifiable: u64,
    /// Checkouts compared across the parties.
    pub checkouts: u64,
    /// Items handed out or burned, over all parties.
    pub items_spent: u64,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every export's chain and, with more than one party's, that they agree:
/// - each chain: consecutive numbers, every `prev` the hash before it, every `hash` right,
///   record 0 linked to its party's genesis;
/// - witnesses: every head a party recorded of another is in that other's chain (same hash at
///   the same place); a chain shorter than a witnessed head has lost records;
/// - agreement: a checkout reserved at several parties has the same pool and ranges at each;
///   one handed out (or burned) at any party is held by every party whose export covers its
///   time, and released at none; no party hands out or burns an item twice.
pub fn verify(exports: &[Export]) -> Report {
    let mut report = Report::default();
    let mut seen_parties = BTreeSet::new();
    for e in exports {
        if !seen_parties.insert(e.header.party) {
            report
                .problems
                .push(format!("two exports of party {}", e.header.party));
        }
        check_chain(e, &mut report);
    }
    if let Some(first) = exports.first() {
        for e in exports {
            if e.header.consortium != first.header.consortium {
                report.problems.push(format!(
                    "party {} belongs to consortium {:?}, party {} to {:?}",
                    e.header.party,
                    e.header.consortium,
                    first.header.party,
                    first.header.consortium
                ));
            }
        }
    }
    check_witnesses(exports, &mut report);
    check_agreement(exports, &mut report);
    report
}

fn check_chain(e: &Export, report: &mut Report) {
    let p = e.header.party;
    let mut expect_seq = e.header.first;
    let mut prev: Option<String> = (e.header.first == 0).then(|| genesis(&e.header.consortium, p));
    for r in &e.records {
        if r.seq != expect_seq {
            report.problems.push(format!(
                "party {p}: record {expect_seq} expected, found record {} (records missing or \
                 out of order)",
                r.seq
            ));
            return;
        }
        if let Some(prev) = &prev {
            if &r.prev != prev {
                report.problems.push(format!(
                    "party {p}: record {} does not follow record {} (its prev is not that \
                     record's hash)",
                    r.seq,
                    r.seq.wrapping_sub(1)
                ));
                return;
            }
        }
        if r.digest() != r.hash {
            report.problems.push(format!(
                "party {p}: record {} ({} {}) was altered: its hash does not match its content",
                r.seq,
                r.event,
                r.checkout.as_deref().unwrap_or("")
            ));
            return;
        }
        prev = Some(r.hash.clone());
        expect_seq += 1;
    }
    if expect_seq != e.header.next {
        report.problems.push(format!(
            "party {p}: the header says the chain has {} records, the export ends at {expect_seq}",
            e.header.next
        ));
    } else if prev.as_deref().is_some_and(|h| h != e.header.head) {
        report.problems.push(format!(
            "party {p}: the header's head is not the last record's hash"
        ));
    }
    report.records.insert(p, e.records.len() as u64);
}

fn check_witnesses(exports: &[Export], report: &mut Report) {
    let by_party: BTreeMap<u8, &Export> = exports.iter().map(|e| (e.header.party, e)).collect();
    for e in exports {
        for r in &e.records {
            let Some(w) = &r.witness else { continue };
            let Some(other) = by_party.get(&w.party) else {
                continue;
            };
            let o = w.party;
            let ok = if w.next == 0 {
                w.hash == genesis(&other.header.consortium, o)
            } else if w.next - 1 < other.header.first {
                report.unverifiable += 1;
                continue;
            } else if w.next > other.header.next {
                report.problems.push(format!(
                    "party {o}: its chain ends at record {}, but party {} saw it at {} records \
                     (record {} of party {}): records were lost or cut off",
                    other.header.next, e.header.party, w.next, r.seq, e.header.party
                ));
                continue;
            } else {
                other
                    .records
                    .get((w.next - 1 - other.header.first) as usize)
                    .is_some_and(|x| x.hash == w.hash)
            };
            if ok {
                report.witnessed += 1;
            } else {
                report.problems.push(format!(
                    "party {o}: record {} is not the one party {} saw (record {} of party {}): \
                     the chain was rewritten",
                    w.next.saturating_sub(1),
                    e.header.party,
                    r.seq,
                    e.header.party
                ));
            }
        }
    }
}

/// One checkout as one party's records tell it.
#[derive(Default)]
struct Seen<'a> {
    reserve: Option<&'a AuditRecord>,
    spent: Option<&'a AuditRecord>,
    released: Option<&'a AuditRecord>,
}

fn check_agreement(exports: &[Export], report: &mut Report) {
    // checkout -> party -> what that party did with it.
    let mut checkouts: BTreeMap<&str, BTreeMap<u8, Seen>> = BTreeMap::new();
    for e in exports {
        let p = e.header.party;
        // batch -> item ranges handed out or burned here (first, end, record).
        let mut spent: BTreeMap<BatchId, Vec<(u64, u64, u64)>> = BTreeMap::new();
        for r in &e.records {
            let Some(id) = r.checkout.as_deref() else {
                continue;
            };
            let seen = checkouts.entry(id).or_default().entry(p).or_default();
            match r.event.as_str() {
                // A follower releases a stale reservation and may hold the same id again.
                "reserve" => seen.reserve = Some(r),
                "release" => seen.released = Some(r),
                _ if r.spends() => {
                    seen.spent = Some(r);
                    for g in &r.ranges {
                        let end = g.first.saturating_add(g.count);
                        let list = spent.entry(g.batch).or_default();
                        if let Some(&(_, _, other)) =
                            list.iter().find(|(f, e, _)| *f < end && g.first < *e)
                        {
                            report.problems.push(format!(
                                "party {p}: items {}..{end} of batch {} handed out twice \
                                 (records {other} and {})",
                                g.first, g.batch, r.seq
                            ));
                        }
                        list.push((g.first, end, r.seq));
                        report.items_spent += g.count;
                    }
                }
                _ => {}
            }
        }
    }
    // The time from which each party's export is complete.
    let covers_from: BTreeMap<u8, u64> = exports
        .iter()
        .map(|e| {
            let from = if e.header.first == 0 {
                0
            } else {
                e.records.first().map_or(u64::MAX, |r| r.at)
            };
            (e.header.party, from)
        })
        .collect();
    let mut found: Vec<(u64, String)> = Vec::new();
    for (id, parties) in &checkouts {
        report.checkouts += 1;
        let reserves: Vec<(u8, &AuditRecord)> = parties
            .iter()
            .filter_map(|(p, s)| s.reserve.map(|r| (*p, r)))
            .collect();
        if let Some((p0, r0)) = reserves.first() {
            for (p, r) in &reserves[1..] {
                if r.pool != r0.pool || r.ranges != r0.ranges {
                    found.push((
                        r.at.min(r0.at),
                        format!(
                            "checkout {id:?}: party {p0} reserved {} (record {}), party {p} \
                             reserved {} (record {})",
                            describe(r0),
                            r0.seq,
                            describe(r),
                            r.seq
                        ),
                    ));
                }
            }
        }
        let spent: Vec<(u8, &AuditRecord)> = parties
            .iter()
            .filter_map(|(p, s)| s.spent.map(|r| (*p, r)))
            .collect();
        let Some((sp, sr)) = spent.first() else {
            continue;
        };
        for (p, from) in &covers_from {
            let seen = parties.get(p);
            if sr.at < *from {
                continue;
            }
            match seen {
                Some(Seen {
                    released: Some(rel),
                    spent: None,
                    ..
                }) => found.push((
                    rel.at,
                    format!(
                        "checkout {id:?}: party {sp} handed it out (record {}), party {p} \
                         released its items back to stock (record {})",
                        sr.seq, rel.seq
                    ),
                )),
                Some(Seen {
                    reserve: Some(_), ..
                }) => {}
                _ => found.push((
                    sr.at,
                    format!(
                        "checkout {id:?}: party {sp} handed it out (record {}), party {p} has \
                         no record of it",
                        sr.seq
                    ),
                )),
            }
        }
    }
    found.sort_by_key(|(at, _)| *at);
    report.problems.extend(found.into_iter().map(|(_, m)| m));
}

fn describe(r: &AuditRecord) -> String {
    let pool = r.pool.map_or_else(|| "?".to_string(), |p| p.to_string());
    let ranges: Vec<String> = r
        .ranges
        .iter()
        .map(|g| format!("{}[{}..{}]", g.batch, g.first, g.first + g.count))
        .collect();
    format!("{pool} {}", ranges.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolSpec {
        "triple-z64".parse().unwrap()
    }

    fn range(batch: u8, first: u64, count: u64) -> ShareRange {
        ShareRange {
            batch: BatchId([batch; 16]),
            first,
            count,
        }
    }

    fn rec(event: &str, at: u64, checkout: &str, ranges: Vec<ShareRange>) -> AuditRecord {
        let mut r = AuditRecord::new(event, at);
        r.pool = Some(pool());
        r.checkout = Some(checkout.into());
        r.ranges = ranges;
        r
    }

    fn export(party: u8, records: Vec<AuditRecord>) -> Export {
        let mut tip = Tip {
            next: 0,
            hash: genesis("c", party),
        };
        let records: Vec<AuditRecord> = records
            .into_iter()
            .map(|mut r| {
                tip.append(&mut r);
                r
            })
            .collect();
        Export {
            header: ExportHeader {
                format: FORMAT.into(),
                consortium: "c".into(),
                parties: 3,
                party,
                first: 0,
                next: tip.next,
                head: tip.hash,
            },
            records,
        }
    }

    fn agreeing() -> Vec<Export> {
        (0..3)
            .map(|p| {
                export(
                    p,
                    vec![
                        rec("reserve", 10, "a", vec![range(1, 0, 5)]),
                        rec("consume", 11, "a", vec![range(1, 0, 5)]),
                        rec("reserve", 12, "b", vec![range(1, 5, 5)]),
                        rec("release", 13, "b", vec![range(1, 5, 5)]),
                    ],
                )
            })
            .collect()
    }

    #[test]
    fn the_hash_is_fixed_by_the_format() {
        // A test vector: a change of serde_json's map order, of a field's spelling or of the
        // rule would make every stored chain fail; this catches it first.
        let mut r = rec("consume", 1700000000, "run-1", vec![range(7, 0, 10)]);
        r.by = Some("engine-0".into());
        let mut tip = Tip {
            next: 0,
            hash: genesis("health", 0),
        };
        tip.append(&mut r);
        assert_eq!(
            genesis("health", 0),
            "d38546ba993f154771bc0c36d0d7c5410e0acc0857a120af8428318dbea83b1e"
        );
        // The same as Python computes with the recipe in the module doc.
        assert_eq!(
            r.hash,
            "d99c1da2596f93ca7e1b1999927c5cd2b1169268f0b9c1a5f41dfaad3f665930"
        );
    }

    #[test]
    fn agreeing_exports_verify() {
        let report = verify(&agreeing());
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.records[&2], 4);
        assert_eq!(report.items_spent, 15);
        assert_eq!(report.checkouts, 2);
    }

    #[test]
    fn an_edited_record_is_named() {
        let mut e = agreeing();
        e[1].records[1].ranges = vec![range(1, 0, 6)];
        let report = verify(&e);
        assert!(report.problems[0].contains("party 1: record 1 (consume a) was altered"));
    }

    #[test]
    fn a_dropped_or_reordered_record_is_named() {
        let mut e = agreeing();
        e[2].records.remove(2);
        assert!(verify(&e).problems[0].contains("party 2: record 2 expected, found record 3"));
        let mut e = agreeing();
        e[0].records.swap(1, 2);
        assert!(verify(&e).problems[0].contains("party 0: record 1 expected, found record 2"));
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_the_heads_others_witnessed() {
        let mut e = agreeing();
        // Party 0 saw party 1 after its second record.
        let seen = e[1].records[1].clone();
        let mut w = AuditRecord::new("witness", 11);
        w.witness = Some(Head {
            party: 1,
            next: 2,
            hash: seen.hash,
        });
        let mut records: Vec<AuditRecord> = e[0].records.drain(..).collect();
        records.push(w);
        e[0] = export(0, records);
        assert!(verify(&e).ok(), "{:?}", verify(&e).problems);
        assert_eq!(verify(&e).witnessed, 1);
        // Party 1 rewrites its whole chain, consistently, to hide its download.
        let mut forged = agreeing()[1].records.clone();
        forged[1].event = "release".into();
        e[1] = export(1, forged);
        let report = verify(&e);
        assert!(
            report.problems[0].contains("party 1: record 1 is not the one party 0 saw"),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn parties_that_disagree_are_named_first_disagreement_first() {
        let mut e = agreeing();
        let mut other = e[2].records.clone();
        other[0].ranges = vec![range(1, 1, 5)];
        other[1].ranges = vec![range(1, 1, 5)];
        // And later, party 1 released what others handed out.
        let mut p1 = e[1].records.clone();
        p1[1].event = "release".into();
        e[2] = export(2, other);
        e[1] = export(1, p1);
        let report = verify(&e);
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(report.problems[0].contains("checkout \"a\": party 0 reserved"));
        assert!(report.problems[0].contains("party 2 reserved"));
        assert!(report.problems[1].contains("party 1 released"));
    }

    #[test]
    fn an_item_handed_out_twice_is_named() {
        let mut e = agreeing();
        let mut p0 = e[0].records.clone();
        p0.push(rec("reserve", 20, "c", vec![range(1, 3, 4)]));
        p0.push(rec("consume", 21, "c", vec![range(1, 3, 4)]));
        e[0] = export(0, p0);
        let report = verify(&e);
        assert!(report
            .problems
            .iter()
            .any(|p| p.contains("party 0: items 3..7") && p.contains("handed out twice")));
    }

    #[test]
    fn beacons_cross_the_wire_as_headers() {
        let b = Beacon {
            head: Head {
                party: 2,
                next: 17,
                hash: "ab".repeat(32),
            },
            boot: 1_700_000_000_000_000_000,
            opened: 12,
        };
        assert_eq!(Beacon::from_header(&b.to_header()), Some(b));
        assert_eq!(Beacon::from_header("2:17:xyz:1:1"), None);
        let more_at_open_than_now = format!("2:17:{}:1:18", "ab".repeat(32));
        assert_eq!(Beacon::from_header(&more_at_open_than_now), None);
    }
}
