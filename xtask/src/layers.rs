//! `cargo xtask layers`: checks that no module of `stack-user` imports a
//! module of a layer above its own (docs/ARCHITECTURE.md has the table).
//!
//! Every `crate::ROOM` path (plain, in a `use crate::{...}` group, or
//! reached through `super::` past the crate root) in code — not in comments —
//! is an edge from the file's room to ROOM. An edge is allowed when ROOM is
//! the same room or is listed below the file's room in [`LAYERS`]; the
//! binary (`src/bin/`) may use every room through `xstack::`. A few rules
//! inside a room ([`INNER`]) keep its own sub-layers apart (a connection
//! never reaches into the engine that owns it). `cargo xtask test` runs
//! this check first.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

use crate::util::root;

/// Rooms of `stack-user/src`, lowest first, each with the rooms it may
/// import. A room may always import itself.
pub const LAYERS: &[(&str, &[&str])] = &[
    ("time", &[]),
    ("wire", &["time"]),
    ("tcp", &["time", "wire"]),
    ("apps", &["time", "wire", "tcp"]),
    ("iface", &["time", "wire", "tcp", "apps"]),
    ("datapath", &["time", "wire", "tcp", "iface"]),
    (
        "runtime",
        &["time", "wire", "tcp", "apps", "iface", "datapath"],
    ),
    (
        "net",
        &[
            "time", "wire", "tcp", "apps", "iface", "datapath", "runtime",
        ],
    ),
    (
        "rt",
        &[
            "time", "wire", "tcp", "apps", "iface", "datapath", "runtime", "net",
        ],
    ),
    (
        "tools",
        &[
            "time", "wire", "tcp", "apps", "iface", "datapath", "runtime", "net", "rt",
        ],
    ),
    (
        "cli",
        &[
            "time", "wire", "tcp", "apps", "iface", "datapath", "runtime", "net", "rt", "tools",
        ],
    ),
];

/// Sub-layers inside a room: files under the first path (relative to
/// `stack-user/src`) must not name the second module path.
pub const INNER: &[(&str, &str)] = &[
    // A control block never reaches into the engine that owns it (the
    // tcb <-> engine <-> time_wait circle the layout issue cut).
    ("tcp/tcb", "crate::tcp::engine"),
    ("tcp/tcb", "super::engine"),
    ("tcp/tcb", "super::super::engine"),
];

/// One import that breaks the layering.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// File, relative to `stack-user/src`.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// Room of the file.
    pub from: String,
    /// Room or module path it names.
    pub to: String,
}

/// Runs the check on the workspace; fails listing every violation.
pub fn layers() -> Result<()> {
    let src = root().join("stack-user/src");
    let violations = check_tree(&src)?;
    if violations.is_empty() {
        println!(
            "layers: ok ({} rooms, no import of a higher layer)",
            LAYERS.len()
        );
        return Ok(());
    }
    for v in &violations {
        if v.to.starts_with('(') {
            eprintln!(
                "layers: stack-user/src/{}: `{}` is not a room of the layer table in xtask/src/layers.rs",
                v.file, v.from
            );
        } else {
            eprintln!(
                "layers: stack-user/src/{}:{}: room `{}` imports `{}`",
                v.file, v.line, v.from, v.to
            );
        }
    }
    bail!(
        "{} import(s) of a higher layer; see docs/ARCHITECTURE.md for what may import what",
        violations.len()
    )
}

/// Checks every `.rs` file under `src` (a `stack-user/src`).
pub fn check_tree(src: &Path) -> Result<Vec<Violation>> {
    let mut files = Vec::new();
    walk(src, &mut files)?;
    let mut out = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(src)
            .context("walked outside the tree")?
            .to_string_lossy()
            .replace('\\', "/");
        let text = fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        out.extend(check_file(&rel, &text));
    }
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// The room of a file (`tcp/tcb/input.rs` → `tcp`, `time.rs` → `time`);
/// `None` for the crate root and the binary.
fn room_of(rel: &str) -> Option<&str> {
    if rel == "lib.rs" || rel.starts_with("bin/") {
        return None;
    }
    let first = rel.split('/').next()?;
    Some(first.strip_suffix(".rs").unwrap_or(first))
}

/// How many `super::` from this file reach the crate root: the depth of
/// its module (`tcp/engine/demux.rs` → 3, `tcp/mod.rs` → 1, `time.rs` → 1).
fn module_depth(rel: &str) -> usize {
    let parts: Vec<&str> = rel.split('/').collect();
    let last = parts.last().copied().unwrap_or("");
    if last == "mod.rs" {
        parts.len() - 1
    } else {
        parts.len()
    }
}

/// Checks one file's text; `rel` is its path relative to `stack-user/src`.
pub fn check_file(rel: &str, text: &str) -> Vec<Violation> {
    let Some(from) = room_of(rel) else {
        return Vec::new();
    };
    let allowed: BTreeSet<&str> = LAYERS
        .iter()
        .find(|(r, _)| *r == from)
        .map(|(_, a)| a.iter().copied().collect())
        .unwrap_or_default();
    if !LAYERS.iter().any(|(r, _)| *r == from) {
        return vec![Violation {
            file: rel.to_string(),
            line: 1,
            from: from.to_string(),
            to: "(a room missing from the layer table in xtask/src/layers.rs)".into(),
        }];
    }
    let depth = module_depth(rel);
    let mut out = Vec::new();
    let code = strip_comments(text);
    for (i, line) in code.lines().enumerate() {
        let mut named = rooms_named(line, &code, i);
        for s in supers_to_root(line, depth) {
            named.push(s);
        }
        for to in named {
            let is_room = LAYERS.iter().any(|(r, _)| *r == to);
            if is_room && to != from && !allowed.contains(to.as_str()) {
                out.push(Violation {
                    file: rel.to_string(),
                    line: i + 1,
                    from: from.to_string(),
                    to,
                });
            }
        }
        for (inner_from, forbidden) in INNER {
            if rel.starts_with(inner_from) && line.contains(forbidden) {
                out.push(Violation {
                    file: rel.to_string(),
                    line: i + 1,
                    from: inner_from.to_string(),
                    to: forbidden.to_string(),
                });
            }
        }
    }
    out
}

/// Blanks `//` comments (doc comments included: an intra-doc link to a
/// higher layer is documentation, not a dependency) and string literals,
/// keeping line structure.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut kept = String::new();
        let mut in_str = false;
        let mut prev = '\0';
        let chars: Vec<char> = line.chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            if !in_str && c == '/' && chars.get(j + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' && !(prev == '\'' && chars.get(j + 1) == Some(&'\'')) {
                in_str = !in_str;
                kept.push('"');
            } else if !in_str {
                kept.push(c);
            }
            prev = if prev == '\\' && c == '\\' { '\0' } else { c };
            j += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// Rooms named on `line` as `crate::ROOM` or inside a `crate::{ ... }`
/// group that starts on this line (the group may span lines: `code` and
/// the line index find its end).
fn rooms_named(line: &str, code: &str, index: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(pos) = rest.find("crate::") {
        let before = rest[..pos].chars().last();
        let after = &rest[pos + "crate::".len()..];
        rest = after;
        // `xstack_crate::` or `$crate::` are not this crate's paths.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if after.starts_with('{') {
            // A group: collect its top-level names, across lines.
            let tail: String = code.lines().skip(index).collect::<Vec<_>>().join("\n");
            let start = tail.find("crate::{").map(|p| p + "crate::{".len());
            if let Some(start) = start {
                out.extend(group_heads(&tail[start..]));
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// Top-level names of a `{ a::b, c, d::{e, f} }` group, given the text
/// after its `{`.
fn group_heads(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    let mut at_head = true;
    for c in text.chars() {
        match c {
            '{' => {
                depth += 1;
                at_head = false;
            }
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                at_head = true;
            }
            c if depth == 0 && at_head && (c.is_alphanumeric() || c == '_') => cur.push(c),
            ':' if depth == 0 => at_head = false,
            c if c.is_whitespace() && !cur.is_empty() => at_head = false,
            _ => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.retain(|n| n != "self");
    out
}

/// Rooms reached with `super::` chains that climb to the crate root.
fn supers_to_root(line: &str, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    let needle = "super::".repeat(depth);
    if depth == 0 {
        return out;
    }
    let mut rest = line;
    while let Some(pos) = rest.find(&needle) {
        let before = rest[..pos].chars().last();
        let after = &rest[pos + needle.len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && name != "super" {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tos(rel: &str, text: &str) -> Vec<String> {
        check_file(rel, text).into_iter().map(|v| v.to).collect()
    }

    #[test]
    fn a_lower_room_importing_a_higher_one_is_reported() {
        assert_eq!(
            tos("wire/tcp.rs", "use crate::tcp::seq::SeqNumber;\n"),
            ["tcp"]
        );
        assert_eq!(
            tos(
                "iface/mod.rs",
                "impl X for crate::datapath::xsk::TxBatch<'_> {}\n"
            ),
            ["datapath"]
        );
    }

    #[test]
    fn grouped_imports_across_lines_are_read() {
        let text = "use crate::{\n    wire::ethernet,\n    runtime::stack::{Stack, StackConfig},\n    tcp::ConnId,\n};\n";
        assert_eq!(tos("datapath/steer.rs", text), ["runtime"]);
    }

    #[test]
    fn super_chains_to_the_crate_root_are_read() {
        // tcp/engine/demux.rs: three supers reach the root.
        assert_eq!(
            tos(
                "tcp/engine/demux.rs",
                "use super::super::super::iface::Interface;\n"
            ),
            ["iface"]
        );
        // Two supers stay inside tcp.
        assert!(tos("tcp/engine/demux.rs", "use super::super::tcb::Tcb;\n").is_empty());
    }

    #[test]
    fn comments_and_strings_are_not_imports() {
        let text = "//! See [`crate::runtime::Stack`].\nlet s = \"crate::tools\"; // crate::cli\n";
        assert!(tos("tcp/mod.rs", text).is_empty());
    }

    #[test]
    fn downward_and_own_room_imports_pass() {
        let text = "use crate::{time::Instant, wire::tcp::SeqNumber, tcp::engine::TcpEngine};\n";
        assert!(tos("tcp/engine/api.rs", text).is_empty());
        assert!(tos("cli/serve.rs", "use crate::runtime::serve;\n").is_empty());
    }

    #[test]
    fn a_control_block_naming_its_engine_is_reported() {
        assert_eq!(
            tos("tcp/tcb/input.rs", "use crate::tcp::engine::Warnings;\n"),
            ["crate::tcp::engine"]
        );
    }

    #[test]
    fn a_room_missing_from_the_table_is_reported() {
        let v = check_file("newroom/mod.rs", "fn f() {}\n");
        assert_eq!(v.len(), 1);
        assert!(v[0].to.contains("missing"));
    }
}
