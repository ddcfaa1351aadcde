"""The acceptance report as a page people read (Chinese labels; no external assets)."""

from __future__ import annotations

from typing import Any

import orjson
from jinja2 import Environment, select_autoescape

__all__ = ["render_report"]

_TEMPLATE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{{ r.prefix }} 纵向贯通验收报告</title>
<style>
body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;
  margin:2rem;color:#222;max-width:70rem}
h1{font-size:1.5rem} table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} .ok{color:#137333;font-weight:bold} .no{color:#b3261e;font-weight:bold}
pre{white-space:pre-wrap;font-size:.8rem;background:#fafafa;margin:0}
</style></head><body>
<h1>{{ r.prefix }} 纵向贯通验收报告</h1>
<p>检查方：{{ r.checker }}　检查时间：{{ r.checked_at }}　结论：
{% if r.passed %}<span class="ok">通过</span>{% else %}<span class="no">未通过</span>{% endif %}</p>
<table><tr><th>检查项</th><th>结果</th><th>说明</th><th>证据</th></tr>
{% for c in r.criteria %}<tr>
<td>{{ c.title }}</td>
<td>{% if c.passed %}<span class="ok">通过</span>
{% else %}<span class="no">未通过</span>{% endif %}</td>
<td>{{ c.summary }}</td><td><pre>{{ evidence(c.evidence) }}</pre></td></tr>
{% endfor %}</table>
<p>阈值：{% for k, v in r.thresholds.items() %}{{ k }} = {{ v }}；{% endfor %}</p>
<p>本报告由检查方以 Ed25519 签名（{{ r.sig.split(':')[0] }}），JSON 原件可独立验证。</p>
</body></html>
"""


def render_report(report: dict[str, Any]) -> str:
    env = Environment(autoescape=select_autoescape(default=True))

    def evidence(value: Any) -> str:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()

    return env.from_string(_TEMPLATE).render(r=report, evidence=evidence)
