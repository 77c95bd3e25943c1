#!/usr/bin/env python3
"""Render the chart without Helm: a small, strict subset of Go templates + Sprig.

Why: Helm is not obtainable from the registries these machines reach (crates.io, PyPI,
Debian), so tests and the plain-manifest generator cannot run `helm template`. The chart keeps
its templating to a subset this renderer implements exactly, and `helm template` renders the
same output (up to whitespace), because the subset has Go's semantics:

  actions     {{ pipeline }}  with {{- / -}} trimming, {{/* comments */}}
  control     if / else if / else / end, with / else / end
  terms       .  .Values.a.b  .Release.Name  .Release.Namespace  .Chart.AppVersion  .a (in with)
              "strings"  numbers  true false
  functions   quote  toYaml  indent N  nindent N  default D  eq A B  ne A B  not A  and A B..
              or A B..  b64enc S  randAlphaNum N  lookup APIVERSION KIND NAMESPACE NAME
              (lookup finds what render_chart's `cluster` holds; nothing by default, as
              `helm template` and a first `helm install`)
  pipes       x | f a  ==  f a x

Anything else is an error, and so is a reference to a value that values.yaml does not define:
a typo fails the render instead of producing an empty field.

Usage: render.py CHART [-f VALUES.yaml]... [--set a.b=v]... [--release NAME] [--namespace NS]
"""

from __future__ import annotations

import argparse
import base64
import copy
import os
import re
import secrets
import string
import sys
from typing import Any

import yaml

ACTION = re.compile(r"\{\{(-?)(\s*)(.*?)(\s*)(-?)\}\}", re.S)


class TemplateError(Exception):
    pass


class Missing:
    """A lookup that found nothing (only allowed where Go would test truthiness)."""

    def __init__(self, path: str):
        self.path = path


def truthy(v: Any) -> bool:
    if isinstance(v, Missing) or v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, dict)):
        return bool(v)
    return True


def to_text(v: Any, where: str) -> str:
    if isinstance(v, Missing):
        raise TemplateError(f"{where}: {v.path} is not defined in the values")
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        raise TemplateError(f"{where}: printing a map/list needs toYaml")
    return str(v)


def to_yaml(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n")


def tokenize_args(s: str) -> list[str]:
    out, i = [], 0
    while i < len(s):
        if s[i].isspace():
            i += 1
        elif s[i] == '"':
            j = i + 1
            while j < len(s) and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            out.append(s[i : j + 1])
            i = j + 1
        else:
            j = i
            while j < len(s) and not s[j].isspace():
                j += 1
            out.append(s[i:j])
            i = j
    return out


def split_pipes(s: str) -> list[str]:
    parts, cur, q = [], "", False
    for ch in s:
        if ch == '"':
            q = not q
        if ch == "|" and not q:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


class Renderer:
    def __init__(self, root: dict[str, Any], name: str, cluster: dict | None = None):
        self.root = root
        self.name = name
        # What `lookup` finds: {(apiVersion, kind, namespace, name): object}. Empty, as for
        # `helm template` and a first install.
        self.cluster = cluster or {}

    def term(self, tok: str, dot: Any) -> Any:
        if tok.startswith('"'):
            return bytes(tok[1:-1], "utf-8").decode("unicode_escape")
        if tok in ("true", "false"):
            return tok == "true"
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        if tok == ".":
            return dot
        if tok.startswith("."):
            parts = tok[1:].split(".")
            base = self.root if parts[0] in ("Values", "Release", "Chart") else dot
            cur = base
            for p in parts:
                if isinstance(cur, dict) and p in cur:
                    cur = cur[p]
                else:
                    return Missing(tok)
            return cur
        raise TemplateError(f"{self.name}: unsupported term {tok!r}")

    def call(self, fn: str, args: list[Any]) -> Any:
        where = self.name
        if fn == "quote":
            return '"' + to_text(args[-1], where).replace("\\", "\\\\").replace('"', '\\"') + '"'
        if fn == "toYaml":
            v = args[-1]
            if isinstance(v, Missing):
                raise TemplateError(f"{where}: {v.path} is not defined in the values")
            return to_yaml(v)
        if fn in ("indent", "nindent"):
            n, s = args
            pad = " " * n
            body = "\n".join(pad + line for line in to_text(s, where).split("\n"))
            return ("\n" if fn == "nindent" else "") + body
        if fn == "default":
            d, v = args
            return v if truthy(v) else d
        if fn in ("eq", "ne"):
            a, b = (to_text(x, where) if isinstance(x, Missing) else x for x in args)
            return (a == b) if fn == "eq" else (a != b)
        if fn == "not":
            return not truthy(args[0])
        if fn == "lookup":
            if len(args) != 4:
                raise TemplateError(f"{where}: lookup takes apiVersion, kind, namespace, name")
            key = tuple(to_text(a, where) for a in args)
            return copy.deepcopy(self.cluster.get(key, {}))
        if fn == "randAlphaNum":
            alphabet = string.ascii_letters + string.digits
            return "".join(secrets.choice(alphabet) for _ in range(int(args[0])))
        if fn == "b64enc":
            return base64.b64encode(to_text(args[-1], where).encode()).decode()
        if fn == "and":
            for a in args:
                if not truthy(a):
                    return a
            return args[-1]
        if fn == "or":
            for a in args:
                if truthy(a):
                    return a
            return args[-1]
        raise TemplateError(f"{where}: unsupported function {fn!r}")

    def pipeline(self, expr: str, dot: Any) -> Any:
        val: Any = None
        first = True
        for cmd in split_pipes(expr):
            toks = tokenize_args(cmd)
            if not toks:
                raise TemplateError(f"{self.name}: empty command in {expr!r}")
            head = toks[0]
            if head.startswith(".") or head.startswith('"') or re.fullmatch(r"-?\d+|true|false", head):
                if len(toks) != 1 or not first:
                    raise TemplateError(f"{self.name}: cannot call {head!r} in {expr!r}")
                val = self.term(head, dot)
            else:
                args = [self.term(t, dot) for t in toks[1:]]
                if not first:
                    args.append(val)
                val = self.call(head, args)
            first = False
        return val

    def render(self, text: str, dot: Any) -> str:
        # Tokenize into text and actions, applying trim markers.
        pieces: list[tuple[str, str]] = []
        pos = 0
        for m in ACTION.finditer(text):
            lit = text[pos : m.start()]
            if m.group(1) == "-":
                lit = lit.rstrip(" \t\r\n")
            pieces.append(("text", lit))
            pieces.append(("action", m.group(3)))
            pos = m.end()
            if m.group(5) == "-":
                rest = text[pos:]
                pos += len(rest) - len(rest.lstrip(" \t\r\n"))
        pieces.append(("text", text[pos:]))
        out, i = self.block(pieces, 0, dot, top=True)
        return out

    def block(self, pieces, i, dot, top=False, active=True):
        """Render pieces from i until a matching else/end; returns (text, index, stopper)."""
        out = []
        while i < len(pieces):
            kind, val = pieces[i]
            if kind == "text":
                if active:
                    out.append(val)
                i += 1
                continue
            act = val.strip()
            if act.startswith("/*"):
                i += 1
                continue
            word = act.split(None, 1)[0] if act else ""
            if word in ("end", "else"):
                if top:
                    raise TemplateError(f"{self.name}: unexpected {{{{ {act} }}}}")
                return "".join(out), i, act
            if word in ("if", "with"):
                text, i = self.control(pieces, i, dot, active)
                out.append(text)
                continue
            if word in ("range", "define", "template", "include", "block", "tpl"):
                raise TemplateError(f"{self.name}: {word} is outside the supported subset")
            if active:
                out.append(to_text(self.pipeline(act, dot), self.name))
            i += 1
        if not top:
            raise TemplateError(f"{self.name}: missing {{{{ end }}}}")
        return "".join(out), i

    def control(self, pieces, i, dot, active):
        act = pieces[i][1].strip()
        word, expr = act.split(None, 1)
        taken = False
        out = ""
        while True:
            val = self.pipeline(expr, dot) if active and not taken else None
            cond = active and not taken and truthy(val)
            inner_dot = val if (word == "with" and cond) else dot
            text, i, stop = self.block(pieces, i + 1, inner_dot, active=cond)
            if cond:
                out, taken = text, True
            if stop == "end":
                return out, i + 1
            if stop == "else":
                text, i, stop2 = self.block(pieces, i + 1, dot, active=active and not taken)
                if active and not taken:
                    out = text
                if stop2 != "end":
                    raise TemplateError(f"{self.name}: else must be followed by end")
                return out, i + 1
            if stop.startswith("else if "):
                word, expr = "if", stop[len("else if ") :]
                continue
            raise TemplateError(f"{self.name}: unexpected {stop!r}")


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def set_value(values: dict, assignment: str) -> None:
    key, _, raw = assignment.partition("=")
    cur = values
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""


def render_chart(chart: str, values: dict | None = None, sets: list[str] = (),
                 release: str = "tinkerbell", namespace: str = "tinkerbell",
                 cluster: dict | None = None) -> str:
    """Render every template of CHART; returns one multi-document YAML string. CLUSTER holds
    the objects `lookup` finds, keyed (apiVersion, kind, namespace, name)."""
    with open(os.path.join(chart, "Chart.yaml")) as f:
        meta = yaml.safe_load(f)
    with open(os.path.join(chart, "values.yaml")) as f:
        vals = yaml.safe_load(f) or {}
    if values:
        vals = merge(vals, values)
    for s in sets:
        set_value(vals, s)
    root = {
        "Values": vals,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
        "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
    }
    docs = []
    tdir = os.path.join(chart, "templates")
    for name in sorted(os.listdir(tdir)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(tdir, name)) as f:
            text = Renderer(root, name, cluster).render(f.read(), root)
        for doc in re.split(r"(?m)^---\s*$", text):
            if doc.strip() and yaml.safe_load(doc) is not None:
                docs.append(f"# Source: tinkerbell/templates/{name}\n" + doc.strip("\n") + "\n")
    return "---\n" + "---\n".join(docs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("chart")
    p.add_argument("-f", "--values", action="append", default=[])
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--release", default="tinkerbell")
    p.add_argument("--namespace", default="tinkerbell")
    a = p.parse_args()
    over: dict = {}
    for path in a.values:
        with open(path) as f:
            over = merge(over, yaml.safe_load(f) or {})
    try:
        sys.stdout.write(render_chart(a.chart, over, a.set, a.release, a.namespace))
    except TemplateError as e:
        sys.exit(f"render.py: {e}")


if __name__ == "__main__":
    main()
