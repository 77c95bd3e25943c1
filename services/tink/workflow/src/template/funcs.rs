//! Template functions: a subset of sprig's *hermetic* functions (the ones whose output depends
//! only on their input, which is what upstream registers through
//! `sprig.HermeticTxtFuncMap()`), plus upstream's own `formatPartition`,
//! `netmaskToPrefixLength`, `toYaml` and `fromYaml`.
//!
//! gotmpl has no sprig, so these are written here, following sprig's argument order (the
//! piped value is the *last* argument: `{{ .x | replace "a" "b" }}`) and its lenient
//! conversions (`toString`, `int`, ...). Every error names its function.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gotmpl::{FuncMap, Template, TemplateError, Value};
use sha2::{Digest, Sha256};

type R = Result<Value, TemplateError>;

fn err(func: &str, msg: impl std::fmt::Display) -> TemplateError {
    TemplateError::Exec(format!("{func}: {msg}"))
}

fn want(func: &str, args: &[Value], n: usize) -> Result<(), TemplateError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(TemplateError::ArgCount {
            name: func.to_string(),
            expected: n,
            got: args.len(),
        })
    }
}

/// sprig's `strval`: strings as they are, nil as "", everything else Go-formatted.
pub(crate) fn strval(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Nil => String::new(),
        other => other.to_string(),
    }
}

/// sprig's `toInt64` (cast.ToInt64): lenient, 0 when not convertible.
fn int_of(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Uint(u) => i64::try_from(*u).unwrap_or(i64::MAX),
        // Truncation is sprig's behaviour for floats.
        #[allow(clippy::cast_possible_truncation)]
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn s(v: impl Into<String>) -> Value {
    Value::String(Arc::from(v.into()))
}

fn list_of(func: &str, v: &Value) -> Result<Vec<Value>, TemplateError> {
    match v {
        Value::List(l) => Ok(l.to_vec()),
        Value::Nil => Ok(Vec::new()),
        other => Err(err(
            func,
            format!("expected a list, got {}", other.type_name()),
        )),
    }
}

fn map_of(func: &str, v: &Value) -> Result<BTreeMap<Arc<str>, Value>, TemplateError> {
    match v {
        Value::Map(m) => Ok((**m).clone()),
        Value::Nil => Ok(BTreeMap::new()),
        other => Err(err(
            func,
            format!("expected a map, got {}", other.type_name()),
        )),
    }
}

/// sprig's `empty`: Go's zero value test.
fn is_empty(v: &Value) -> bool {
    !v.is_truthy()
}

/// Converts a template value to JSON (functions become null).
pub(crate) fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil | Value::Function(_) => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Uint(u) => J::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string()),
        Value::List(l) => J::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
    }
}

fn from_json(func: &str, v: &serde_json::Value) -> R {
    gotmpl::to_value(v).map_err(|e| err(func, e))
}

fn b64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// `formatPartition(device, n)`: the device node of partition `n` of a disk, as upstream:
/// `/dev/disk/by-*/x` → `x-partN`; a device whose name ends in a digit (nvme, mmcblk, loop,
/// nbd) → `…pN`; otherwise `…N` (`/dev/sda` → `/dev/sda1`).
pub fn format_partition(device: &str, partition: i64) -> String {
    if device.starts_with("/dev/disk/") {
        format!("{device}-part{partition}")
    } else if device.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{device}p{partition}")
    } else {
        format!("{device}{partition}")
    }
}

/// `netmaskToPrefixLength("255.255.255.0")` → 24. Non-contiguous or unparsable masks are
/// errors.
pub fn netmask_to_prefix_length(netmask: &str) -> Result<u32, String> {
    let ip: std::net::Ipv4Addr = netmask
        .trim()
        .parse()
        .map_err(|_| format!("invalid netmask: {netmask}"))?;
    let bits = u32::from(ip);
    let ones = bits.leading_ones();
    if bits.checked_shl(ones).unwrap_or(0) != 0 {
        return Err(format!("non-contiguous netmask: {netmask}"));
    }
    Ok(ones)
}

/// YAML text of a value, without the trailing newline (as upstream's `toYaml`).
pub(crate) fn to_yaml(v: &Value) -> Result<String, String> {
    let text = serde_saphyr::to_string(&to_json(v)).map_err(|e| e.to_string())?;
    Ok(text.trim_end_matches('\n').to_string())
}

/// `f!(map, "name", |args, name| body)` registers a function; with an argument count after
/// the name, calls with another count are refused first.
macro_rules! f {
    ($map:ident, $name:literal, $n:literal, |$args:ident, $nm:ident| $body:expr) => {
        f!($map, $name, |$args, $nm| {
            want($nm, $args, $n)?;
            $body
        })
    };
    ($map:ident, $name:literal, |$args:ident, $nm:ident| $body:expr) => {
        $map.insert(
            $name.to_string(),
            Arc::new(|$args: &[Value]| -> R {
                #[allow(unused_variables)]
                let $nm = $name;
                $body
            }),
        );
    };
}

/// The arguments but nil, each through `each`, joined with spaces.
fn spaced(args: &[Value], each: impl Fn(&Value) -> String) -> Value {
    let parts: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::Nil))
        .map(each)
        .collect();
    s(parts.join(" "))
}

/// Unary string → string functions.
fn str1(map: &mut FuncMap, name: &'static str, op: fn(&str) -> String) {
    map.insert(
        name.to_string(),
        Arc::new(move |args: &[Value]| -> R {
            want(name, args, 1)?;
            Ok(s(op(&strval(&args[0]))))
        }),
    );
}

/// The function map every template gets.
#[allow(clippy::too_many_lines)]
pub fn func_map() -> FuncMap {
    let mut m = FuncMap::new();
    // Strings.
    str1(&mut m, "trim", |x| x.trim().to_string());
    str1(&mut m, "upper", str::to_uppercase);
    str1(&mut m, "lower", str::to_lowercase);
    str1(&mut m, "nospace", |x| {
        x.chars().filter(|c| !c.is_whitespace()).collect()
    });
    str1(&mut m, "title", |x| {
        let mut up = true;
        x.chars()
            .map(|c| {
                let out = if up {
                    c.to_uppercase().next().unwrap_or(c)
                } else {
                    c
                };
                up = c.is_whitespace();
                out
            })
            .collect()
    });
    str1(&mut m, "toString", str::to_string);
    str1(&mut m, "b64enc", |x| b64_encode(x.as_bytes()));
    str1(&mut m, "sha256sum", |x| {
        hex::encode(Sha256::digest(x.as_bytes()))
    });
    f!(m, "b64dec", 1, |a, name| {
        let bytes = b64_decode(strval(&a[0]).trim()).ok_or_else(|| err(name, "invalid base64"))?;
        Ok(s(String::from_utf8_lossy(&bytes)))
    });
    f!(m, "trimAll", 2, |a, name| {
        let cut = strval(&a[0]);
        Ok(s(strval(&a[1]).trim_matches(|c| cut.contains(c))))
    });
    f!(m, "trimPrefix", 2, |a, name| {
        let (p, x) = (strval(&a[0]), strval(&a[1]));
        Ok(s(x.strip_prefix(p.as_str()).unwrap_or(&x)))
    });
    f!(m, "trimSuffix", 2, |a, name| {
        let (p, x) = (strval(&a[0]), strval(&a[1]));
        Ok(s(x.strip_suffix(p.as_str()).unwrap_or(&x)))
    });
    f!(m, "replace", 3, |a, name| Ok(s(
        strval(&a[2]).replace(&strval(&a[0]), &strval(&a[1]))
    )));
    f!(m, "contains", 2, |a, name| Ok(Value::Bool(
        strval(&a[1]).contains(&strval(&a[0]))
    )));
    f!(m, "hasPrefix", 2, |a, name| Ok(Value::Bool(
        strval(&a[1]).starts_with(&strval(&a[0]))
    )));
    f!(m, "hasSuffix", 2, |a, name| Ok(Value::Bool(
        strval(&a[1]).ends_with(&strval(&a[0]))
    )));
    f!(m, "repeat", 2, |a, name| {
        let n = usize::try_from(int_of(&a[0]))
            .unwrap_or(0)
            .min(super::MAX_OUTPUT);
        Ok(s(strval(&a[1]).repeat(n)))
    });
    f!(m, "substr", 3, |a, name| {
        let x: Vec<char> = strval(&a[2]).chars().collect();
        let len = i64::try_from(x.len()).unwrap_or(i64::MAX);
        let (start, end) = (int_of(&a[0]), int_of(&a[1]));
        let start = if start < 0 { 0 } else { start.min(len) };
        let end = if end < 0 || end > len { len } else { end };
        let (start, end) = (
            usize::try_from(start).unwrap_or(0),
            usize::try_from(end).unwrap_or(0),
        );
        Ok(s(if start > end {
            String::new()
        } else {
            x[start..end].iter().collect()
        }))
    });
    f!(m, "trunc", 2, |a, name| {
        let x: Vec<char> = strval(&a[1]).chars().collect();
        let n = int_of(&a[0]);
        let keep = usize::try_from(n.unsigned_abs())
            .unwrap_or(usize::MAX)
            .min(x.len());
        Ok(s(if n >= 0 {
            x[..keep].iter().collect::<String>()
        } else {
            x[x.len() - keep..].iter().collect()
        }))
    });
    f!(m, "quote", |a, name| Ok(spaced(a, |v| {
        serde_json::to_string(&strval(v)).unwrap_or_default()
    })));
    f!(m, "squote", |a, name| Ok(spaced(a, |v| format!(
        "'{}'",
        strval(v)
    ))));
    f!(m, "cat", |a, name| Ok(spaced(a, strval)));
    f!(m, "indent", 2, |a, name| {
        let pad = " ".repeat(usize::try_from(int_of(&a[0])).unwrap_or(0).min(1024));
        Ok(s(format!(
            "{pad}{}",
            strval(&a[1]).replace('\n', &format!("\n{pad}"))
        )))
    });
    f!(m, "nindent", 2, |a, name| {
        let pad = " ".repeat(usize::try_from(int_of(&a[0])).unwrap_or(0).min(1024));
        Ok(s(format!(
            "\n{pad}{}",
            strval(&a[1]).replace('\n', &format!("\n{pad}"))
        )))
    });
    f!(m, "splitList", 2, |a, name| {
        let sep = strval(&a[0]);
        Ok(Value::from(
            strval(&a[1]).split(sep.as_str()).map(s).collect::<Vec<_>>(),
        ))
    });
    f!(m, "split", 2, |a, name| {
        let sep = strval(&a[0]);
        let parts: BTreeMap<String, Value> = strval(&a[1])
            .split(sep.as_str())
            .enumerate()
            .map(|(i, p)| (format!("_{i}"), s(p)))
            .collect();
        Ok(Value::from(parts))
    });
    f!(m, "join", 2, |a, name| {
        let items = match &a[1] {
            Value::List(l) => l
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(strval)
                .collect(),
            other => vec![strval(other)],
        };
        Ok(s(items.join(&strval(&a[0]))))
    });
    f!(m, "toStrings", 1, |a, name| Ok(Value::from(
        list_of(name, &a[0])?
            .iter()
            .map(|v| s(strval(v)))
            .collect::<Vec<_>>(),
    )));
    // Numbers.
    f!(m, "atoi", 1, |a, name| Ok(Value::Int(
        strval(&a[0]).trim().parse().unwrap_or(0)
    )));
    for n in ["int", "int64"] {
        m.insert(
            n.to_string(),
            Arc::new(move |a: &[Value]| -> R {
                want(n, a, 1)?;
                Ok(Value::Int(int_of(&a[0])))
            }),
        );
    }
    f!(m, "float64", 1, |a, name| Ok(Value::Float(match &a[0] {
        Value::String(x) => x.trim().parse().unwrap_or(0.0),
        Value::Float(f) => *f,
        #[allow(clippy::cast_precision_loss)]
        other => int_of(other) as f64,
    })));
    f!(m, "add", |a, name| Ok(Value::Int(
        a.iter().map(int_of).fold(0i64, i64::wrapping_add)
    )));
    f!(m, "mul", |a, name| Ok(Value::Int(
        a.iter().map(int_of).fold(1i64, i64::wrapping_mul)
    )));
    f!(m, "add1", 1, |a, name| Ok(Value::Int(
        int_of(&a[0]).wrapping_add(1)
    )));
    f!(m, "sub", 2, |a, name| Ok(Value::Int(
        int_of(&a[0]).wrapping_sub(int_of(&a[1]))
    )));
    f!(m, "div", 2, |a, name| int_of(&a[0])
        .checked_div(int_of(&a[1]))
        .map(Value::Int)
        .ok_or_else(|| err(name, "division by zero")));
    f!(m, "mod", 2, |a, name| int_of(&a[0])
        .checked_rem(int_of(&a[1]))
        .map(Value::Int)
        .ok_or_else(|| err(name, "division by zero")));
    f!(m, "max", |a, name| {
        a.iter()
            .map(int_of)
            .max()
            .map(Value::Int)
            .ok_or_else(|| err(name, "needs an argument"))
    });
    f!(m, "min", |a, name| {
        a.iter()
            .map(int_of)
            .min()
            .map(Value::Int)
            .ok_or_else(|| err(name, "needs an argument"))
    });
    // Lists and dicts.
    f!(m, "list", |a, name| Ok(Value::from(a.to_vec())));
    f!(m, "dict", |a, name| {
        let mut d = BTreeMap::new();
        for pair in a.chunks(2) {
            d.insert(strval(&pair[0]), pair.get(1).cloned().unwrap_or(Value::Nil));
        }
        Ok(Value::from(d))
    });
    f!(m, "get", 2, |a, name| Ok(map_of(name, &a[0])?
        .get(strval(&a[1]).as_str())
        .cloned()
        .unwrap_or_else(|| s(""))));
    f!(m, "set", 3, |a, name| {
        let mut d = map_of(name, &a[0])?;
        d.insert(Arc::from(strval(&a[1])), a[2].clone());
        Ok(Value::from(d))
    });
    f!(m, "hasKey", 2, |a, name| Ok(Value::Bool(
        map_of(name, &a[0])?.contains_key(strval(&a[1]).as_str()),
    )));
    f!(m, "keys", |a, name| {
        let mut keys: Vec<Value> = Vec::new();
        for d in a {
            keys.extend(map_of(name, d)?.keys().map(|k| Value::String(k.clone())));
        }
        Ok(Value::from(keys))
    });
    f!(m, "first", 1, |a, name| Ok(list_of(name, &a[0])?
        .first()
        .cloned()
        .unwrap_or(Value::Nil)));
    f!(m, "last", 1, |a, name| Ok(list_of(name, &a[0])?
        .last()
        .cloned()
        .unwrap_or(Value::Nil)));
    f!(m, "rest", 1, |a, name| Ok(Value::from(
        list_of(name, &a[0])?
            .into_iter()
            .skip(1)
            .collect::<Vec<_>>(),
    )));
    f!(m, "initial", 1, |a, name| {
        let mut l = list_of(name, &a[0])?;
        l.pop();
        Ok(Value::from(l))
    });
    for n in ["append", "push"] {
        m.insert(
            n.to_string(),
            Arc::new(move |a: &[Value]| -> R {
                want(n, a, 2)?;
                let mut l = list_of(n, &a[0])?;
                l.push(a[1].clone());
                Ok(Value::from(l))
            }),
        );
    }
    f!(m, "has", 2, |a, name| Ok(Value::Bool(
        list_of(name, &a[1])?
            .iter()
            .any(|v| to_json(v) == to_json(&a[0])),
    )));
    // Defaults and flow.
    f!(m, "empty", 1, |a, name| Ok(Value::Bool(is_empty(&a[0]))));
    f!(m, "default", |a, name| {
        if a.is_empty() || a.len() > 2 {
            return Err(err(name, "expects 1 or 2 arguments"));
        }
        Ok(match a.get(1) {
            Some(given) if !is_empty(given) => given.clone(),
            _ => a[0].clone(),
        })
    });
    f!(m, "coalesce", |a, name| Ok(a
        .iter()
        .find(|v| !is_empty(v))
        .cloned()
        .unwrap_or(Value::Nil)));
    f!(m, "ternary", 3, |a, name| Ok(if a[2].is_truthy() {
        a[0].clone()
    } else {
        a[1].clone()
    }));
    f!(m, "kindOf", 1, |a, name| Ok(s(match &a[0] {
        Value::Nil => "invalid",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int64",
        Value::Uint(_) => "uint64",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::List(_) => "slice",
        Value::Map(_) => "map",
        Value::Function(_) => "func",
    })));
    // Encodings.
    f!(m, "toJson", 1, |a, name| serde_json::to_string(&to_json(
        &a[0]
    ))
    .map(s)
    .map_err(|e| err(name, e)));
    f!(m, "fromJson", 1, |a, name| {
        let v: serde_json::Value =
            serde_json::from_str(&strval(&a[0])).map_err(|e| err(name, e))?;
        from_json(name, &v)
    });
    f!(m, "toYaml", 1, |a, name| to_yaml(&a[0])
        .map(s)
        .map_err(|e| err(name, e)));
    f!(m, "fromYaml", 1, |a, name| {
        let v: serde_json::Value =
            serde_saphyr::from_str(&strval(&a[0])).map_err(|e| err(name, e))?;
        from_json(name, &v)
    });
    // Upstream's own.
    f!(m, "formatPartition", 2, |a, name| Ok(s(format_partition(
        &strval(&a[0]),
        int_of(&a[1])
    ))));
    f!(m, "netmaskToPrefixLength", 1, |a, name| {
        netmask_to_prefix_length(&strval(&a[0]))
            .map(|n| Value::Int(i64::from(n)))
            .map_err(|e| err(name, e))
    });
    budgeted(m)
}

/// The largest value any function may produce (or, for the multiplying ones, be asked to
/// produce), in bytes: the rendered output's own cap. Every intermediate value is bounded, so
/// one Template cannot exhaust the appliance's memory on the way to an output that would be
/// refused anyway.
pub const MAX_VALUE: usize = super::MAX_OUTPUT;

/// How long one render may run. Checked at every function call; `range` is bounded by its
/// iteration budget and the output by [`super::MAX_OUTPUT`].
pub const MAX_RENDER_TIME: Duration = Duration::from_secs(5);

thread_local! {
    /// When the render running on this thread must stop.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The render on this thread must finish by now + [`MAX_RENDER_TIME`] (until the guard
/// drops).
pub(crate) struct RenderClock(Option<Instant>);

impl RenderClock {
    pub(crate) fn start(budget: Duration) -> RenderClock {
        RenderClock(DEADLINE.with(|d| d.replace(Some(Instant::now() + budget))))
    }
}

impl Drop for RenderClock {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.0));
    }
}

/// The prefix of every budget error, so callers can tell them apart.
pub const BUDGET_EXCEEDED: &str = "render budget exceeded";

fn over(func: &str, what: impl std::fmt::Display) -> TemplateError {
    err(func, format!("{BUDGET_EXCEEDED}: {what}"))
}

/// How deep lists and maps may nest in a value. The budget counts bytes, so without this a
/// loop of `list $d` builds an 11,000-deep value within it, and the recursive walks that print
/// or serialise it (ours and gotmpl's) overflow the stack and abort the process.
pub const MAX_DEPTH: usize = 64;

/// Bytes of the strings in `v` (lists and maps walked), stopping once past `limit`; a value
/// nested deeper than [`MAX_DEPTH`] counts as over any limit.
fn size_of(v: &Value, limit: usize) -> usize {
    size_at(v, limit, 0)
}

fn size_at(v: &Value, limit: usize, depth: usize) -> usize {
    if depth > MAX_DEPTH {
        return usize::MAX;
    }
    match v {
        Value::String(x) => x.len(),
        Value::List(l) => {
            let mut n = 0usize;
            for x in l.iter() {
                n = n
                    .saturating_add(size_at(x, limit, depth + 1))
                    .saturating_add(1);
                if n > limit {
                    break;
                }
            }
            n
        }
        Value::Map(m) => {
            let mut n = 0usize;
            for (k, x) in m.iter() {
                n = n
                    .saturating_add(k.len())
                    .saturating_add(size_at(x, limit, depth + 1))
                    .saturating_add(1);
                if n > limit {
                    break;
                }
            }
            n
        }
        _ => 24,
    }
}

fn args_size(args: &[Value]) -> usize {
    args.iter()
        .fold(0usize, |n, a| n.saturating_add(size_of(a, MAX_VALUE)))
}

/// What a function would produce at most, for those whose output can outgrow their input by
/// more than a constant factor (or whose inputs are many): checked before any work is done.
fn predicted(name: &str, args: &[Value]) -> Option<usize> {
    let str_at = |i: usize| args.get(i).map(|v| strval(v).len()).unwrap_or(0);
    let count = |i: usize| usize::try_from(args.get(i).map_or(0, int_of)).unwrap_or(0);
    Some(match name {
        "repeat" => str_at(1).saturating_mul(count(0)),
        "replace" => {
            let (old, new, x) = (str_at(0), str_at(1), strval(args.get(2)?));
            let hits = if old == 0 {
                x.chars().count() + 1
            } else {
                x.matches(strval(&args[0]).as_str()).count()
            };
            x.len().saturating_add(hits.saturating_mul(new))
        }
        "indent" | "nindent" => {
            let lines = strval(args.get(1)?).matches('\n').count() + 1;
            str_at(1).saturating_add(lines.saturating_mul(count(0).min(1024) + 1))
        }
        "join" => args_size(args).saturating_mul(2),
        "cat" | "quote" | "squote" | "print" | "println" | "printf" | "toJson" | "toYaml"
        | "toPrettyJson" => args_size(args).saturating_mul(2),
        _ => return None,
    })
}

/// Wraps every function: the render's time budget is checked before it runs, its predicted
/// output (see [`predicted`]) before it works, its actual result after. gotmpl's own
/// string-producing builtins (`print`, `println`, `printf`, `html`, `js`, `urlquery`) are
/// wrapped the same way (run through a one-call template, as their functions are private).
fn budgeted(mut m: FuncMap) -> FuncMap {
    for name in ["print", "println", "printf", "html", "js", "urlquery"] {
        m.insert(
            name.to_string(),
            Arc::new(move |args: &[Value]| -> R { builtin(name, args) }),
        );
    }
    let names: Vec<String> = m.keys().cloned().collect();
    for name in names {
        let inner = m[&name].clone();
        let nm = name.clone();
        m.insert(
            name,
            Arc::new(move |args: &[Value]| -> R {
                if DEADLINE.with(Cell::get).is_some_and(|d| Instant::now() > d) {
                    return Err(over(&nm, format!("the render took longer than {MAX_RENDER_TIME:?}")));
                }
                if let Some(n) = predicted(&nm, args)
                    && n > MAX_VALUE
                {
                    return Err(over(&nm, format!("its result would be about {n} bytes, over the {MAX_VALUE}-byte budget for a value")));
                }
                let v = inner(args)?;
                let n = size_of(&v, MAX_VALUE);
                if n > MAX_VALUE {
                    return Err(over(&nm, format!("its result is over the {MAX_VALUE}-byte budget for a value, or nested deeper than {MAX_DEPTH}")));
                }
                Ok(v)
            }),
        );
    }
    m
}

/// gotmpl's builtin `name` on `args`: `{{name .a0 .a1 ...}}` executed over them.
fn builtin(name: &str, args: &[Value]) -> R {
    let src = (0..args.len()).fold(format!("{{{{{name}"), |mut t, i| {
        t.push_str(&format!(" .a{i}"));
        t
    }) + "}}";
    let data: BTreeMap<String, Value> = args
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("a{i}"), v.clone()))
        .collect();
    let out = Template::new(name)
        .parse(&src)
        .and_then(|t| t.execute_to_string(&Value::from(data)))
        .map_err(|e| err(name, e))?;
    Ok(s(out))
}

/// Names of the functions [`func_map`] provides (for docs and tests).
pub fn names() -> Vec<String> {
    func_map().into_keys().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "héllo\n"] {
            let enc = b64_encode(text.as_bytes());
            assert_eq!(b64_decode(&enc).unwrap(), text.as_bytes(), "{enc}");
        }
        assert_eq!(b64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64_encode(b"fo"), "Zm8=");
        assert!(b64_decode("a*b").is_none());
    }

    #[test]
    fn partitions_and_netmasks() {
        assert_eq!(format_partition("/dev/nvme0n1", 1), "/dev/nvme0n1p1");
        assert_eq!(format_partition("/dev/sda", 1), "/dev/sda1");
        assert_eq!(format_partition("/dev/mmcblk0", 2), "/dev/mmcblk0p2");
        assert_eq!(
            format_partition("/dev/disk/by-id/wwn-0x5000", 3),
            "/dev/disk/by-id/wwn-0x5000-part3"
        );
        assert_eq!(netmask_to_prefix_length("255.255.255.0"), Ok(24));
        assert_eq!(netmask_to_prefix_length("255.255.255.255"), Ok(32));
        assert_eq!(netmask_to_prefix_length("0.0.0.0"), Ok(0));
        assert!(netmask_to_prefix_length("255.0.255.0").is_err());
        assert!(netmask_to_prefix_length("nope").is_err());
    }
}
