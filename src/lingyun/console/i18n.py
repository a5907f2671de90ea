"""The console's two languages: English and Chinese, chosen by a cookie or Accept-Language.

Labels that tests and users find things by (``Email``, ``Password``, ``Sign in``, the
navigation, ``Create key``, ``Name``, ``Secret key``) are keys of this table: keep them stable.
"""

from __future__ import annotations

from collections.abc import Callable

from lingyun.console.i18n_ops import OPS_ZH

LANGS = ("en", "zh")
LANG_COOKIE = "ly_lang"

ZH: dict[str, str] = {
    "Lingyun console": "灵云控制台",
    "Email": "邮箱",
    "Password": "密码",
    "Sign in": "登录",
    "Sign out": "退出登录",
    "Overview": "概览",
    "API keys": "API 密钥",
    "Usage": "用量与账单",
    "Models": "模型",
    "Playground": "体验中心",
    "Tenants": "租户",
    "Deployments": "部署",
    "Users": "用户",
    "Audit log": "审计日志",
    "Tenant": "租户",
    "Switch": "切换",
    "Language": "语言",
    "Create key": "创建密钥",
    "Name": "名称",
    "Project": "项目",
    "Expires": "到期日",
    "Secret key": "密钥",
    "Copy": "复制",
    "Copy this key now: it is shown once and never again.": "请立即复制此密钥：它只显示这一次。",
    "Prefix": "前缀",
    "Created": "创建时间",
    "Last used": "最近使用",
    "Status": "状态",
    "Revoke": "吊销",
    "active": "有效",
    "revoked": "已吊销",
    "expired": "已过期",
    "never": "从未",
    "Incorrect email or password.": "邮箱或密码错误。",
    "Too many sign-in attempts. Try again in {minutes} min.": (
        "登录尝试过多，请 {minutes} 分钟后再试。"
    ),
    "Your session expired. Please sign in again.": "会话已过期，请重新登录。",
    "Create the platform admin": "创建平台管理员",
    "This link works once. It creates the first platform admin of this Lingyun.": (
        "此链接仅可使用一次，用于创建本灵云的第一位平台管理员。"
    ),
    "This setup link is no longer valid.": "此初始化链接已失效。",
    "Balance": "余额",
    "Reserved": "已预留",
    "Spent": "已消费",
    "Free quota": "免费额度",
    "Budgets": "预算",
    "Invoice": "账单",
    "Month": "月份",
    "Show": "显示",
    "Download JSON": "下载 JSON",
    "Download CSV": "下载 CSV",
    "Requests": "请求数",
    "Tokens": "Token 数",
    "Spend": "花费",
    "Amount": "金额",
    "Total": "合计",
    "Model": "模型",
    "Time": "时间",
    "Prompt": "输入",
    "Cached": "缓存",
    "Output": "输出",
    "TTFT ms": "首字延迟 ms",
    "Duration ms": "耗时 ms",
    "Ended": "结束方式",
    "Request log": "请求日志",
    "Filter": "筛选",
    "All": "全部",
    "No data yet.": "暂无数据。",
    "Error rate": "错误率",
    "Last 30 days": "最近 30 天",
    "Requests per day": "每日请求数",
    "Tokens per day": "每日 Token 数",
    "Spend per day": "每日花费",
    "Price per 1M tokens": "每百万 Token 价格",
    "Input": "输入",
    "Use it with the openai client": "用 openai 客户端调用",
    "not priced": "未定价",
    "API key": "API 密钥",
    "Message": "消息",
    "Send": "发送",
    "Stop": "停止",
    "Reply": "回复",
    "Create tenant": "创建租户",
    "Top up": "充值",
    "Weight": "权重",
    "Deploy": "部署",
    "Undeploy": "下线",
    "Engine": "引擎",
    "Replicas": "副本",
    "Healthy": "健康",
    "Action": "操作",
    "Actor": "操作者",
    "Target": "对象",
    "Role": "角色",
    "Not found.": "未找到。",
    "You may not do this.": "您无权执行此操作。",
    "The form expired. Reload the page and try again.": "表单已失效，请刷新页面后重试。",
    "Done.": "已完成。",
    "Operator": "运营",
    "No tenant yet.": "还没有租户。",
    "Projects": "项目与成员",
    "Projects and members": "项目与成员",
    "Create project": "创建项目",
    "Add member": "添加成员",
    **OPS_ZH,
}

TABLES: dict[str, dict[str, str]] = {"en": {}, "zh": ZH}


def pick(cookie: str | None, accept_language: str | None) -> str:
    """The cookie wins (the header switch); else the first of en/zh the browser asks for."""
    if cookie in LANGS:
        return cookie
    best, best_q = "en", -1.0
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        base = tag.strip().lower().split("-")[0]
        if base not in LANGS:
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        q -= i * 1e-6  # the earlier of two equal weights wins
        if q > best_q:
            best, best_q = base, q
    return best


def translator(lang: str) -> Callable[..., str]:
    table = TABLES.get(lang, {})

    def t(text: str, **values: object) -> str:
        out = table.get(text, text)
        return out.format(**values) if values else out

    return t
