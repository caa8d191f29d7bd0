"""Every refusal and status line of the editor's desk, in zh-CN and English."""

from __future__ import annotations

from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        "not_approved": (
            "期刊 {slug} 的第 {number} 版状态为「{status}」：只有审核通过的版本才能发送给列表"
            "（测试发送不受限制）；请先提交审核",
            "issue {slug} version {number} is {status}: only an approved version can be sent "
            "to lists (test sends are always allowed); submit it for review first",
        ),
        "no_version": (
            "期刊 {slug} 还没有保存的版本：只有审核通过的版本才能发送给列表",
            "issue {slug} has no saved version yet: only an approved version can be sent to lists",
        ),
        "changed_since": (
            "期刊 {slug} 在第 {number} 版审核通过后又被修改（内容哈希 {now} ≠ 批准的 {approved}）："
            "审核已失效，请重新提交审核",
            "issue {slug} changed after version {number} was approved (content hash {now} ≠ "
            "approved {approved}): the approval is void; submit it for review again",
        ),
        "unreadable": (
            "期刊 {slug} 的内容无法读取，不能核对审核：{reason}",
            "issue {slug} cannot be read to check its approval: {reason}",
        ),
        "too_few": (
            "期刊 {slug} 第 {number} 版需要 {needed} 位审核人批准，目前 {have} 位",
            "issue {slug} version {number} needs {needed} approvals, it has {have}",
        ),
        "no_issue": ("找不到期刊 #{id}", "no issue #{id}"),
        "no_such_version": (
            "期刊 {slug} 没有第 {number} 版",
            "issue {slug} has no version {number}",
        ),
        "not_latest": (
            "第 {number} 版不是最新版本（最新为第 {latest} 版）：只能审核最新版本",
            "version {number} is not the latest (that is version {latest}): only the latest "
            "version can be reviewed",
        ),
        "not_submitted": (
            "第 {number} 版状态为「{status}」，不是「待审核」：无法审核",
            "version {number} is {status}, not submitted: there is nothing to review",
        ),
        "already_submitted": (
            "第 {number} 版已提交审核，请等待审核结果",
            "version {number} is submitted already: wait for the review",
        ),
        "already_approved": (
            "第 {number} 版已由 {by} 于 {at} 审核通过，无需再次审核",
            "version {number} was approved already by {by} at {at}: nothing more to do",
        ),
        "own_version": (
            "您是第 {number} 版的最后编辑者（或提交者），不能审核自己的版本；请由另一位审核人审核",
            "you are the last editor (or submitter) of version {number}: you cannot review your "
            "own version; another reviewer must",
        ),
        "twice": (
            "您已经批准过第 {number} 版；还需要另一位审核人批准",
            "you have approved version {number} already; another reviewer must approve too",
        ),
        "hash_moved": (
            "第 {number} 版的内容与您审阅时不同（{seen} ≠ {now}）：请重新打开后再审核",
            "version {number} is not the content you reviewed ({seen} ≠ {now}): reopen it and "
            "review again",
        ),
        "not_reviewer": (
            "只有审核人或管理员可以审核（您的角色：{role}）",
            "only a reviewer or an admin can review (your role: {role})",
        ),
        "need_comment": (
            "退回修改时请写明意见（1 到 5000 个字符）",
            "say what to change when sending a version back (1 to 5000 characters)",
        ),
        "stale_base": (
            "您编辑的是第 {base} 版，但 {by} 已保存了第 {latest} 版：请先比较差异再保存",
            "you edited version {base}, but {by} has saved version {latest} since: compare them "
            "before saving",
        ),
        "slug_changed": (
            "slug 不能在编辑器中修改（本期为 {slug}，源文件写的是 {given}）",
            "the slug cannot change in the editor (this issue is {slug}, the source says {given})",
        ),
        "unchanged": ("内容没有变化，未保存新版本", "nothing changed: no new version saved"),
        "restored_note": ("由第 {number} 版恢复", "restored from version {number}"),
        "someone": ("（未登录的发布者）", "(a publisher outside the admin)"),
        "review_off": (
            "审核已关闭（review_required = false）：任何已发布的期刊都可以发送",
            "review is off (review_required = false): any published issue can be sent",
        ),
    }
)

# the review words of dispatch.vocabulary.VersionStatus / ReviewVerdict, as readers see them
STATUS_WORDS = Catalog(
    {
        "draft": ("草稿", "draft"),
        "submitted": ("待审核", "submitted"),
        "approved": ("已批准", "approved"),
        "changes_requested": ("退回修改", "changes requested"),
    }
)


def status_word(status: str, locale: str | None = None) -> str:
    """A version status or review verdict in the reader's language (unknown words as they are)."""
    return STATUS_WORDS.get(status, locale) if status in STATUS_WORDS.messages else status


def say(key: str, status: str | None = None, **kwargs: object) -> str:
    """MESSAGES.both, with `status` put in each language's own word."""
    if status is None:
        return MESSAGES.both(key, **kwargs)
    zh = MESSAGES.get(key, "zh-CN", status=status_word(status, "zh-CN"), **kwargs)
    en = MESSAGES.get(key, "en", status=status_word(status, "en"), **kwargs)
    return f"{zh} / {en}"
