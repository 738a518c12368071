//! What MP-SPDZ's compiler says a program needs, read from its report, and which of it is
//! Larder's material: the basis of `larder plan`.
//!
//! `compile.py` ends with `Program requires at most:` and one line per requirement, the count
//! right-aligned (`"%12.0f"`, never in exponent form; `inf` or `nan` when a loop's bound is
//! known only at run time), then its name: `<domain> <kind>s` with the domain `integer` (the
//! program's ring or prime field), `gf2n` or `bit`; `<domain> inputs from player <n>`;
//! `strict|loose edabits of length <n>`; `matrix multiplications (AxB * BxC)`;
//! `virtual machine rounds` (`Tape.ReqNum.pretty` in its `Compiler/program.py`).

use crate::material::Kind;

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// `None` when the compiler could not bound it (`inf`, `nan`).
    pub count: Option<u64>,
    /// The requirement's name as printed (`integer triples`).
    pub what: String,
}

/// What a requirement is to Larder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Material of this kind in the program's `integer` domain (an input mask owned by the
    /// player, for inputs).
    Material { kind: Kind, owner: Option<u8> },
    /// Work of the online phase, which burns no preprocessed item (opens, rounds, the
    /// multiplications that triples serve).
    Online,
    /// Preprocessing Larder does not serve (gf2n, binary circuits, edaBits, matrix triples).
    NotServed,
}

/// Reads the requirement lines of a compiler's output: those after `Program requires at
/// most:` (or every line shaped like one, if the header is missing), up to the first line
/// that is not one.
///
/// # Errors
/// No requirement found.
pub fn parse_report(text: &str) -> Result<Vec<Requirement>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with("Program requires at most:"))
        .map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for line in &lines[start..] {
        match parse_line(line) {
            Some(r) => out.push(r),
            None if out.is_empty() && start == 0 => continue,
            None => break,
        }
    }
    if out.is_empty() {
        return Err(
            "no requirements found: give the output of MP-SPDZ's compile.py, which ends \
                    with \"Program requires at most:\" and a line per requirement"
                .into(),
        );
    }
    Ok(out)
}

fn parse_line(line: &str) -> Option<Requirement> {
    let (n, what) = line.trim_start().split_once(' ')?;
    let count = match n {
        "inf" | "nan" => None,
        n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => Some(n.parse().ok()?),
        _ => return None,
    };
    let what = what.trim();
    if what.is_empty() {
        return None;
    }
    Some(Requirement {
        count,
        what: what.to_string(),
    })
}

/// What Larder makes of a requirement's name.
pub fn classify(what: &str) -> Need {
    if let Some(player) = what.strip_prefix("integer inputs from player ") {
        return match player.trim().parse() {
            Ok(owner) => Need::Material {
                kind: Kind::InputMask,
                owner: Some(owner),
            },
            Err(_) => Need::NotServed,
        };
    }
    let material = |kind| Need::Material { kind, owner: None };
    match what {
        "integer triples" => material(Kind::Triple),
        "integer squares" => material(Kind::Square),
        "integer bits" => material(Kind::Bit),
        "integer inverses" => material(Kind::Inverse),
        "virtual machine rounds" => Need::Online,
        w if ["opens", "simple multiplications", "dot products", "mixeds"]
            .iter()
            .any(|s| w.ends_with(s)) =>
        {
            Need::Online
        }
        _ => Need::NotServed,
    }
}
