//! Turning YAML documents into validated objects for `tinkerbell apply`, all or nothing.
//!
//! Every document is checked before anything is written, and every problem is reported at once,
//! each naming the source, the document number, the line and the field:
//!
//! ```text
//! hw.yaml: document 2 (line 14): spec.interfaces[0].dhcp.allowPxe: unknown field
//! ```
//!
//! **Unknown fields are rejected here**, as `kubectl apply` does by default
//! (`--validate=strict`): a misspelt `allowPxe` silently dropped would leave a machine
//! netbooting forever. The typed model itself tolerates unknown fields, because the Kubernetes
//! backend must read objects written by newer upstream versions; strictness is a property of
//! user input, so it lives at this boundary. Detection is by round trip: decode into the typed
//! model, encode again, and report every input field that did not survive.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use tinkerbell_core::by_kind;
use tinkerbell_core::store::index::{ClaimKind, claims_from_json};
use tinkerbell_core::store::{Kind, Object, ObjectKey, Typed};

/// One problem in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    /// File name, or `-` for standard input.
    pub source: String,
    /// 1-based document number within the source.
    pub document: usize,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// JSON path of the offending field, when there is one.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.source, self.document)?;
        if let Some(l) = self.line {
            write!(f, " (line {l})")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// All problems found in one apply; displays one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", crate::csv::join_lines(.0))]
pub struct ApplyErrors(pub Vec<DocError>);

/// A document that decoded into an object.
#[derive(Debug, Clone)]
pub struct ParsedDoc {
    /// The object.
    pub object: Object,
    /// Source name.
    pub source: String,
    /// 1-based document number.
    pub document: usize,
    /// 1-based line of the document's first line.
    pub line: usize,
}

/// One YAML document's text and where it starts.
struct RawDoc<'a> {
    text: String,
    first_line: usize,
    lines: Vec<&'a str>,
}

/// Split a YAML stream at `---` document markers (at column 0, as the YAML spec requires).
fn split_documents(input: &str) -> Vec<RawDoc<'_>> {
    let mut docs = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    let mut cur_first = 1;
    let mut pending_inline: Option<String> = None;
    for (i, line) in input.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "..." || line.starts_with("... ");
        if is_marker || is_end {
            push_doc(&mut docs, &mut cur, cur_first, pending_inline.take());
            cur_first = i + 2;
            if is_marker {
                // `--- {a: 1}`: content after the marker belongs to the new document.
                let rest = line[3..].trim();
                if !rest.is_empty() && !rest.starts_with('#') {
                    pending_inline = Some(format!("{}{}", " ".repeat(4), rest));
                    cur_first = i + 1;
                }
            }
            continue;
        }
        if cur.is_empty() && pending_inline.is_none() {
            cur_first = i + 1;
        }
        cur.push(line);
    }
    push_doc(&mut docs, &mut cur, cur_first, pending_inline.take());
    docs
}

fn push_doc<'a>(
    docs: &mut Vec<RawDoc<'a>>,
    cur: &mut Vec<&'a str>,
    first: usize,
    inline: Option<String>,
) {
    let lines = std::mem::take(cur);
    let mut text = String::new();
    if let Some(i) = &inline {
        text.push_str(i);
        text.push('\n');
    }
    for l in &lines {
        text.push_str(l);
        text.push('\n');
    }
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if !blank {
        docs.push(RawDoc {
            text,
            first_line: first,
            lines,
        });
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Parse `a.b[0].c` (as serde_path_to_error prints it) into segments.
fn parse_path(s: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in s.split('.') {
        let mut rest = part;
        if let Some(b) = rest.find('[') {
            if b > 0 {
                out.push(Seg::Key(rest[..b].to_string()));
            }
            rest = &rest[b..];
            while let Some(end) = rest.find(']') {
                if let Ok(i) = rest[1..end].parse() {
                    out.push(Seg::Index(i));
                }
                rest = &rest[end + 1..];
            }
        } else if !rest.is_empty() && rest != "?" {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

/// Leading spaces, and the column where a mapping key on this line starts (after `- ` marks).
fn columns(line: &str) -> (usize, usize, &str) {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let mut col = indent;
    let mut rest = &line[indent..];
    while let Some(r) = rest.strip_prefix('-') {
        if !(r.is_empty() || r.starts_with(' ')) {
            break;
        }
        let spaces = r.len() - r.trim_start_matches(' ').len();
        col += 1 + spaces;
        rest = &r[spaces..];
    }
    (indent, col, rest)
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

fn key_of(rest: &str) -> Option<&str> {
    let (k, after) = if let Some(r) = rest.strip_prefix('"') {
        let end = r.find('"')?;
        (&r[..end], &r[end + 1..])
    } else if let Some(r) = rest.strip_prefix('\'') {
        let end = r.find('\'')?;
        (&r[..end], &r[end + 1..])
    } else {
        let end = rest.find(':')?;
        (&rest[..end], &rest[end..])
    };
    let after = after.strip_prefix(':')?;
    (after.is_empty() || after.starts_with(' ') || after.starts_with('\t')).then_some(k.trim_end())
}

/// The 0-based line (within `lines`) where `path` is written, or of its deepest ancestor that
/// could be found. Handles block-style YAML, which is what people write for these objects.
fn locate(lines: &[&str], path: &[Seg]) -> Option<usize> {
    let mut start = 0;
    let mut end = lines.len();
    let mut found = None;
    // Whether `start` is a line that already belongs to the current node (a `- key:` item line).
    for seg in path {
        let first = (start..end).find(|&i| is_content(lines[i]))?;
        match seg {
            Seg::Key(k) => {
                let (_, col, _) = columns(lines[first]);
                let hit = (first..end).find(|&i| {
                    is_content(lines[i]) && {
                        let (_, c, rest) = columns(lines[i]);
                        c == col && key_of(rest) == Some(k.as_str())
                    }
                })?;
                found = Some(hit);
                let (_, _, rest) = columns(lines[hit]);
                let value = rest.split_once(':').map(|(_, v)| v.trim()).unwrap_or("");
                if !value.is_empty()
                    && !value.starts_with('#')
                    && !value.starts_with('|')
                    && !value.starts_with('>')
                {
                    // Inline value: cannot go deeper.
                    return found;
                }
                let block_end = (hit + 1..end)
                    .find(|&i| {
                        is_content(lines[i]) && {
                            let (ind, c, _) = columns(lines[i]);
                            // A sibling key, or a shallower line, ends the block. A `- ` at the
                            // same indent as the key is still the key's sequence value.
                            c <= col && !(ind == col && lines[i].trim_start().starts_with('-'))
                        }
                    })
                    .unwrap_or(end);
                start = hit + 1;
                end = block_end;
            }
            Seg::Index(n) => {
                let (indent, _, _) = columns(lines[first]);
                if !lines[first].trim_start().starts_with('-') {
                    return found;
                }
                let items: Vec<usize> = (first..end)
                    .filter(|&i| {
                        is_content(lines[i]) && {
                            let (ind, _, _) = columns(lines[i]);
                            ind == indent && lines[i].trim_start().starts_with('-')
                        }
                    })
                    .collect();
                let &item = items.get(*n)?;
                found = Some(item);
                let next = items.get(n + 1).copied().unwrap_or(end);
                // Re-enter the item with the dash replaced, so its first key lines up.
                start = item;
                end = next;
                let (_, _, rest) = columns(lines[item]);
                if rest.is_empty() {
                    start = item + 1;
                }
            }
        }
    }
    found
}

/// Input fields that did not survive decoding, as paths. Null, `[]` and `{}` count as absent.
fn lost_fields(input: &Value, output: &Value, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, iv) in i {
                path.push(Seg::Key(k.clone()));
                match o.get(k) {
                    Some(ov) => lost_fields(iv, ov, path, out),
                    None if is_empty(iv) => {}
                    None => out.push(path.clone()),
                }
                path.pop();
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, iv) in i.iter().enumerate() {
                path.push(Seg::Index(n));
                if let Some(ov) = o.get(n) {
                    lost_fields(iv, ov, path, out);
                }
                path.pop();
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Parse every document in `input`. Objects without a namespace get `default_namespace`.
/// Returns every decoded object, or every problem.
pub fn parse_documents(
    source: &str,
    input: &str,
    default_namespace: &str,
) -> Result<Vec<ParsedDoc>, ApplyErrors> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (n, raw) in split_documents(input).into_iter().enumerate() {
        let document = n + 1;
        let err = |line: Option<usize>, field: Option<String>, message: String| DocError {
            source: source.to_string(),
            document,
            line,
            field,
            message,
        };
        let line_of = |path: &[Seg]| locate(&raw.lines, path).map(|l| l + raw.first_line);
        let value: Value = match serde_saphyr::from_str(&raw.text) {
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map(|l| l.line() as usize + raw.first_line - 1);
                let msg = e.to_string();
                let msg = msg.lines().next().unwrap_or("invalid YAML").to_string();
                errors.push(err(
                    line.or(Some(raw.first_line)),
                    None,
                    format!("invalid YAML: {msg}"),
                ));
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        let Value::Object(mut map) = value else {
            errors.push(err(
                Some(raw.first_line),
                None,
                "a document must be a mapping (an object)".into(),
            ));
            continue;
        };
        let api_version = map
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind_s = map
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let Some(kind) = Kind::from_type(&api_version, &kind_s) else {
            let (field, msg) = if api_version.is_empty() {
                ("apiVersion", "missing".to_string())
            } else if kind_s.is_empty() {
                ("kind", "missing".to_string())
            } else {
                let known = Kind::ALL
                    .iter()
                    .filter(|k| k.as_str() == kind_s)
                    .map(|k| k.api_version())
                    .collect::<Vec<_>>();
                if known.is_empty() {
                    (
                        "kind",
                        format!(
                            "unknown kind {kind_s:?} (known: Hardware, Template, Workflow, Machine, Job, Task, Secret)"
                        ),
                    )
                } else {
                    (
                        "apiVersion",
                        format!(
                            "{api_version:?} is not the apiVersion of {kind_s} (want {:?})",
                            known[0]
                        ),
                    )
                }
            };
            errors.push(err(
                line_of(&[Seg::Key(field.into())]).or(Some(raw.first_line)),
                Some(field.into()),
                msg,
            ));
            continue;
        };
        // Default the namespace, as kubectl does.
        if let Some(Value::Object(meta)) = map.get_mut("metadata")
            && meta
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            meta.insert("namespace".into(), Value::String(default_namespace.into()));
        }
        let value = Value::Object(map);
        if value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            let path = [Seg::Key("metadata".into()), Seg::Key("name".into())];
            errors.push(err(
                line_of(&path[..1]).or(Some(raw.first_line)),
                Some("metadata.name".into()),
                "missing".into(),
            ));
            continue;
        }
        let decoded = decode_typed(kind, value.clone());
        let object = match decoded {
            Ok(o) => o,
            Err((path, message)) => {
                let segs = parse_path(&path);
                errors.push(err(
                    line_of(&segs).or(Some(raw.first_line)),
                    Some(path),
                    message,
                ));
                continue;
            }
        };
        let mut lost = Vec::new();
        lost_fields(&value, &object.to_json(), &mut Vec::new(), &mut lost);
        if !lost.is_empty() {
            for path in lost {
                errors.push(err(
                    line_of(&path).or(Some(raw.first_line)),
                    Some(path_string(&path)),
                    format!("unknown field for {kind}"),
                ));
            }
            continue;
        }
        docs.push(ParsedDoc {
            object,
            source: source.to_string(),
            document,
            line: raw.first_line,
        });
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(ApplyErrors(errors))
    }
}

fn decode_typed(kind: Kind, value: Value) -> Result<Object, (String, String)> {
    fn go<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, (String, String)> {
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            (path, e.into_inner().to_string())
        })
    }
    by_kind!(kind, K => go::<K>(value).map(Typed::into_object))
}

/// Checks across documents: the same object twice, or two Hardware claiming one MAC, IP,
/// agent ID or instance ID. (The store checks against what it already holds.)
pub fn check_batch(docs: &[ParsedDoc]) -> Result<(), ApplyErrors> {
    let mut errors = Vec::new();
    let mut seen: HashMap<ObjectKey, &ParsedDoc> = HashMap::new();
    let mut claimed: HashMap<(ClaimKind, String), (&ParsedDoc, String)> = HashMap::new();
    for d in docs {
        let key = d.object.key();
        let error = |field: Option<String>, message: String| DocError {
            source: d.source.clone(),
            document: d.document,
            line: Some(d.line),
            field,
            message,
        };
        if let Some(first) = seen.get(&key) {
            errors.push(error(
                None,
                format!(
                    "{key} is also defined in document {} of {}",
                    first.document, first.source
                ),
            ));
            continue;
        }
        seen.insert(key.clone(), d);
        let Object::Hardware(hw) = &d.object else {
            continue;
        };
        let v = serde_json::to_value(&**hw).unwrap_or(Value::Null);
        match claims_from_json(&v) {
            Ok(claims) => {
                for c in claims {
                    let k = (c.kind, c.value.clone());
                    match claimed.get(&k) {
                        Some((other, _)) if other.object.key() == key => {}
                        Some((other, other_field)) => errors.push(error(
                            Some(c.field.clone()),
                            format!(
                                "{:?} is also claimed by {} ({} of document {} of {})",
                                c.value,
                                other.object.key(),
                                other_field,
                                other.document,
                                other.source
                            ),
                        )),
                        None => {
                            claimed.insert(k, (d, c.field.clone()));
                        }
                    }
                }
            }
            Err(bad) => errors.extend(bad.into_iter().map(|b| error(Some(b.field), b.message))),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApplyErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_line_numbers() {
        let input = "# c\n---\na: 1\n---\n\n---\nb: 2\nc: 3\n...\n--- {d: 4}\n";
        let docs = split_documents(input);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].first_line, 3);
        assert_eq!(docs[1].first_line, 7);
        assert_eq!(docs[2].first_line, 10);
    }

    #[test]
    fn locates_block_paths() {
        let doc = "\
apiVersion: x
spec:
  interfaces:
  - dhcp:
      mac: a
    netboot:
      allowPXE: true
  - dhcp:
      mac: b
      bogus: 1
  metadata:
    instance:
      id: x
";
        let lines: Vec<&str> = doc.lines().collect();
        let p = |s: &str| locate(&lines, &parse_path(s)).map(|l| l + 1);
        assert_eq!(p("spec"), Some(2));
        assert_eq!(p("spec.interfaces[0].dhcp.mac"), Some(5));
        assert_eq!(p("spec.interfaces[0].netboot.allowPXE"), Some(7));
        assert_eq!(p("spec.interfaces[1].dhcp.bogus"), Some(10));
        assert_eq!(p("spec.metadata.instance.id"), Some(13));
        // Unknown leaf: falls back to the deepest ancestor found.
        assert_eq!(p("spec.interfaces[1].dhcp"), Some(8));
    }

    #[test]
    fn path_parsing() {
        assert_eq!(
            parse_path("spec.interfaces[0].dhcp.mac"),
            vec![
                Seg::Key("spec".into()),
                Seg::Key("interfaces".into()),
                Seg::Index(0),
                Seg::Key("dhcp".into()),
                Seg::Key("mac".into())
            ]
        );
    }
}
