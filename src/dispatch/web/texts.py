"""The web side's messages in zh-CN and English (one catalog for pages and API details)."""

from dispatch.i18n import Catalog

TEXTS = Catalog(
    {
        # layout
        "app_name": ("简报投递", "Dispatch"),
        "nav_home": ("概览", "Overview"),
        "nav_lists": ("订阅列表", "Lists"),
        "nav_subscribers": ("订阅者", "Subscribers"),
        "nav_issues": ("期刊", "Issues"),
        "nav_campaigns": ("投递任务", "Campaigns"),
        "nav_archive": ("往期简报", "Archive"),
        "nav_deliverability": ("送达率", "Deliverability"),
        "list_ad_marker": ("主题加“(AD)”", "Subject marked (AD)"),
        "list_ad_marker_help": (
            "网易邮箱把主题不带“(AD)”的营销邮件视为广告；会员简报不是广告，默认不加",
            "NetEase treats marketing mail without (AD) in the subject as advertising; a member "
            "bulletin is not advertising, so it is off by default",
        ),
        # deliverability page
        "deliverability_title": ("送达率与发信域名", "Deliverability and sending domain"),
        "deliv_domains": ("发信域名", "Sending domains"),
        "deliv_doctor": ("域名检查（dispatch doctor）", "Domain check (dispatch doctor)"),
        "deliv_never": (
            "还没有检查过：点击“立即检查”或运行 dispatch doctor。",
            "Not checked yet: press “Check now” or run dispatch doctor.",
        ),
        "deliv_checked_at": ("检查时间：{at}", "Checked at {at}"),
        "deliv_check_now": ("立即检查", "Check now"),
        "deliv_checked": ("域名检查已完成。", "The domain check is done."),
        "deliv_check_failed": (
            "无法运行域名检查（查看 dns_nameservers 设置）。",
            "The domain check could not run (see the dns_nameservers setting).",
        ),
        "deliv_publish": ("需发布：", "Publish:"),
        "deliv_last_days": ("最近 {days} 天", "Last {days} days"),
        "deliv_deliveries": ("投递", "Deliveries"),
        "deliv_bounce_rate": ("硬退信率", "Hard-bounce rate"),
        "deliv_complaint_rate": ("投诉率", "Complaint rate"),
        "deliv_thresholds": (
            "超过 {bounce} 退信或 {complaint} 投诉时，正在发送的活动会自动暂停。",
            "A running campaign pauses itself above {bounce} hard bounces or {complaint} "
            "complaints.",
        ),
        "deliv_suppression": ("抑制名单增长", "Suppression list growth"),
        "deliv_suppression_total": ("共 {n} 个地址", "Suppressed in all: {n}"),
        "deliv_week": ("周", "Week"),
        "deliv_added": ("新增", "Added"),
        "deliv_providers": ("各收件服务商送达率", "Delivery rate per recipient provider"),
        "deliv_provider": ("服务商", "Provider"),
        "deliv_delivered": ("送达", "Delivered"),
        "deliv_rate": ("送达率", "Rate"),
        "deliv_warmup": ("预热计划：今日额度", "Warm-up plan: today's allowance"),
        "deliv_warm": ("已完成预热，不限量", "warm: no cap"),
        "deliv_warmup_day": ("第 {n} 天", "day {n}"),
        "deliv_plan": ("预热计划：{domain}", "Warm-up plan: {domain}"),
        "deliv_plan_day": ("天", "Day"),
        "deliv_plan_date": ("日期", "Date"),
        "deliv_plan_allowance": ("额度", "Allowance"),
        "deliv_plan_used": ("已用", "Used"),
        "deliv_plan_state": ("状态", "State"),
        "deliv_plan_note": (
            "“计划”行按每天都顺利推算；退信或投诉超过阈值时额度会保持或减半。",
            "“Ahead” rows assume every day goes well; bounces or complaints over the threshold "
            "hold or halve the allowance.",
        ),
        "warmup_state_first": ("第一天", "first day"),
        "warmup_state_grown": ("增长", "grown"),
        "warmup_state_held_rates": ("保持：退信/投诉超阈值", "held: bounces, complaints"),
        "warmup_state_held_quiet": ("保持：用量不足一半", "held: under half used"),
        "warmup_state_reduced": ("减半：退信/投诉过高", "halved: bounces, complaints"),
        "warmup_state_warm": ("预热完成", "warm"),
        "warmup_state_ahead": ("计划", "ahead"),
        "deliv_none": ("最近没有邮件投递。", "No email deliveries recently."),
        "logout": ("退出", "Log out"),
        "language": ("语言", "Language"),
        "signed_in_as": ("当前用户：{email}（{role}）", "Signed in as {email} ({role})"),
        "role_admin": ("管理员", "admin"),
        "role_editor": ("编辑", "editor"),
        # login
        "login_title": ("登录", "Log in"),
        "email": ("邮箱", "Email"),
        "password": ("密码", "Password"),
        "login_button": ("登录", "Log in"),
        "login_failed": ("邮箱或密码不正确。", "Wrong email or password."),
        "login_required": ("请先登录。", "Please log in first."),
        "login_throttled": (
            "登录失败次数过多，请在 {seconds} 秒后再试。",
            "Too many failed log-ins: try again in {seconds} seconds.",
        ),
        "forbidden": ("您的角色无权访问此页面。", "Your role may not use this page."),
        "csrf_failed": (
            "表单已过期，请刷新页面后重试。",
            "The form expired; reload the page and try again.",
        ),
        "not_found": ("页面不存在。", "Page not found."),
        "error_title": ("出错了", "Something went wrong"),
        "back_home": ("返回首页", "Back to the start"),
        # overview
        "overview_title": ("概览", "Overview"),
        "count_lists": ("订阅列表", "lists"),
        "count_subscribers": ("订阅者", "subscribers"),
        "count_issues": ("已发布期刊", "published issues"),
        "count_campaigns": ("投递任务", "campaigns"),
        # lists
        "lists_title": ("订阅列表", "Lists"),
        "list_name": ("名称", "Name"),
        "list_members": ("有效订阅者", "Active members"),
        "list_create": ("新建列表", "New list"),
        "list_slug": ("标识", "Slug"),
        "list_double_opt_in": ("双重确认", "Double opt-in"),
        "create": ("创建", "Create"),
        "save": ("保存", "Save"),
        "none_yet": ("暂无。", "None yet."),
        # subscribers
        "subscribers_title": ("订阅者", "Subscribers"),
        "search": ("搜索", "Search"),
        "search_placeholder": ("邮箱或姓名", "email or name"),
        "all_lists": ("全部列表", "all lists"),
        "name": ("姓名", "Name"),
        "locale": ("语言", "Language"),
        "status": ("状态", "Status"),
        "lists_col": ("列表", "Lists"),
        "prev_page": ("上一页", "Previous"),
        "next_page": ("下一页", "Next"),
        "page_of": ("第 {page} 页，共 {total} 条", "Page {page}, {total} in all"),
        "import_title": ("导入 CSV", "Import CSV"),
        "import_hint": (
            "CSV 表头：email,name,locale,lists（lists 用分号分隔）",
            "CSV header: email,name,locale,lists (lists separated by semicolons)",
        ),
        "import_file": ("CSV 文件", "CSV file"),
        "import_list": ("导入到列表", "Into list"),
        "test_sent": ("测试邮件 #{id} 正在发往：{sent}。", "Test #{id} is on its way to: {sent}."),
        "test_rejected": (
            "以下地址未发送：{rejected}",
            "Not sent to these addresses: {rejected}",
        ),
        "new_revision": (
            "原期刊已发送给订阅者，保持发送时的内容；这是改动后的新版本，可以单独发送。",
            "The original issue has been sent and stays as people received it; this is the "
            "changed source as a new revision, to be sent on its own.",
        ),
        "choose_list": ("— 请选择列表 —", "— choose a list —"),
        "import_needs_list": ("请选择要导入到的列表", "choose the list to import into"),
        "import_button": ("导入", "Import"),
        "import_report": ("导入报告", "Import report"),
        "import_summary": (
            "新增 {added}，更新 {updated}，跳过 {skipped}，错误 {errors}",
            "added {added}, updated {updated}, skipped {skipped}, errors {errors}",
        ),
        "line": ("行", "Line"),
        "outcome": ("结果", "Outcome"),
        "message": ("说明", "Message"),
        "export_csv": ("导出 CSV", "Export CSV"),
        "add_subscriber": ("添加订阅者", "Add subscriber"),
        # issues
        "issues_title": ("期刊", "Issues"),
        "issue_title": ("标题", "Title"),
        "issue_number": ("期号", "Number"),
        "issue_period": ("时间范围", "Period"),
        "issue_articles": ("文章数", "Articles"),
        "issue_publish": ("发布期刊源文件", "Publish an issue source"),
        "issue_publish_hint": (
            "上传 issue.md 及其图片（可多选）",
            "Upload issue.md and its images (select several)",
        ),
        "issue_files": ("文件", "Files"),
        "publish": ("发布", "Publish"),
        "preview": ("预览", "Preview"),
        "preview_title": ("预览：{title}", "Preview: {title}"),
        "preview_phone": ("手机（375px）", "Phone (375px)"),
        "preview_desktop": ("桌面（600px）", "Desktop (600px)"),
        "preview_wechat": ("微信图文", "WeChat articles"),
        "wechat_phone_frame": ("手机预览（375 像素宽）", "phone preview (375 px wide)"),
        "wechat_sends": ("微信群发", "WeChat mass sends"),
        "count_wechat_followers": ("微信关注者", "WeChat followers"),
        "wechat_sync_summary": (
            "关注者同步（{at} UTC，{status}）：{seen} 位，新增 {created}，取消关注 {unfollowed}",
            "follower sync ({at} UTC, {status}): {seen} followers, {created} new, "
            "{unfollowed} unfollowed",
        ),
        "wechat_mode_openids": ("按 OpenID 列表", "to openid lists"),
        "wechat_mode_all": ("全部关注者（出现在历史消息）", "all followers (shown in history)"),
        "wechat_mode_tag": ("一个标签", "one tag"),
        "wechat_mode_template": ("模板消息（不允许）", "template messages (not allowed)"),
        "wechat_batch": ("批次", "batch"),
        "wechat_recipients": ("本批人数", "recipients"),
        "wechat_total": ("微信计划发送", "WeChat total"),
        "wechat_filtered": ("过滤后", "after filtering"),
        "wechat_sent": ("发送成功", "sent"),
        "wechat_errors": ("发送失败", "errors"),
        "wechat_no_sends": ("还没有群发记录", "no mass sends yet"),
        "wechat_articles": ("文章阅读数据（微信统计）", "article figures (WeChat's statistics)"),
        "wechat_article": ("文章", "article"),
        "wechat_reads": ("阅读人数", "readers"),
        "wechat_shares": ("分享人数", "sharers"),
        "wechat_favs": ("收藏人数", "favourites"),
        "wechat_no_stats": (
            "暂无数据：发送后次日起可用 dispatch wechat stats 拉取",
            "no figures yet: from the day after a send, fetch them with dispatch wechat stats",
        ),
        "preview_unavailable": ("预览暂不可用：{reason}", "Preview unavailable: {reason}"),
        "new_campaign": ("新建投递", "New campaign"),
        "view_archive": ("网页版", "Web version"),
        # campaigns
        "campaigns_title": ("投递任务", "Campaigns"),
        "campaign_title": ("投递任务 #{id}", "Campaign #{id}"),
        "campaign_issue": ("期刊", "Issue"),
        "campaign_channel": ("渠道", "Channel"),
        "campaign_lists": ("列表", "Lists"),
        "campaign_status": ("状态", "Status"),
        "campaign_tracking": ("打开与点击跟踪", "Open and click tracking"),
        "campaign_create": ("创建投递任务", "Create campaign"),
        "channel_email": ("电子邮件", "Email"),
        "channel_wechat": ("微信公众号", "WeChat"),
        "send": ("发送", "Send"),
        "send_confirm": (
            "确认向 {lists} 共 {count} 位订阅者发送《{title}》？",
            "Send “{title}” to {count} subscribers of {lists}?",
        ),
        "pause": ("暂停", "Pause"),
        "include_new": ("发送给尚未送达的新成员", "Send to those not yet reached"),
        "resume": ("继续", "Resume"),
        "cancel": ("取消", "Cancel"),
        "test_send": ("测试发送", "Test send"),
        "test_send_to": ("测试收件地址（逗号分隔）", "Test addresses (comma separated)"),
        "progress": ("进度", "Progress"),
        "campaign_waiting": ("等待中：{reason}", "Waiting: {reason}"),
        "providers_title": ("按收件服务商", "By receiving provider"),
        "provider": ("服务商", "Provider"),
        "provider_sent": ("已发送", "Sent"),
        "provider_deferred": ("推迟", "Deferred"),
        "provider_bounced": ("退信", "Bounced"),
        "provider_open": ("未完成", "Open"),
        "throttle_state": ("限速状态", "Throttle"),
        "throttle_normal": ("正常", "normal"),
        "throttle_backoff": ("退避 {seconds} 秒", "backing off {seconds} s"),
        "throttle_recovering": ("恢复中 {speed}%", "recovering {speed}%"),
        "stats": ("统计", "Statistics"),
        "stat_total": ("收件人", "Recipients"),
        "stat_sent": ("已发送", "Sent"),
        "stat_delivered": ("已送达", "Delivered"),
        "stat_bounced": ("退信", "Bounced"),
        "stat_failed": ("失败", "Failed"),
        "stat_opened": ("打开", "Opened"),
        "stat_clicked": ("点击", "Clicked"),
        "stat_unsubscribed": ("退订", "Unsubscribed"),
        "rate": ("比例", "Rate"),
        "chart_title": ("打开与点击（首次，按时间）", "First opens and clicks over time"),
        "chart_bucket": ("每格 {minutes} 分钟", "{minutes} minutes per bar"),
        "chart_empty": ("尚无打开或点击。", "No opens or clicks yet."),
        "deliveries": ("收件人明细", "Recipients"),
        "events": ("事件", "Events"),
        "recipient": ("收件人", "Recipient"),
        "attempts": ("尝试次数", "Attempts"),
        "done": ("完成", "Done"),
        "action_failed": ("操作失败：{reason}", "Action failed: {reason}"),
        "saved": ("已保存。", "Saved."),
        # public pages
        "unsub_title": ("退订", "Unsubscribe"),
        "unsub_question": (
            "确定不再接收邮件 {email} 的简报吗？",
            "Stop sending the bulletin to {email}?",
        ),
        "unsub_one": ("仅退订“{list}”", "Leave only “{list}”"),
        "unsub_all": ("退订全部列表", "Leave all lists"),
        "unsub_confirm": ("确认退订", "Confirm"),
        "unsub_done": (
            "已退订，您将不再收到这些邮件。",
            "You are unsubscribed and will receive no more of these emails.",
        ),
        "unsub_invalid": ("退订链接无效或已损坏。", "This unsubscribe link is invalid or damaged."),
        "confirm_title": ("订阅确认", "Confirm subscription"),
        "confirm_done": (
            "感谢确认，您的订阅已生效。",
            "Thank you: your subscription is confirmed.",
        ),
        "confirm_invalid": (
            "确认链接无效或已过期。",
            "This confirmation link is invalid or has expired.",
        ),
        "archive_title": ("往期简报", "Bulletin archive"),
        "archive_empty": ("尚无已发布的期刊。", "No issue has been published yet."),
        "contents": ("目录", "Contents"),
        "source": ("来源", "Source"),
        "published_on": ("发布日期", "Date"),
        "author": ("作者", "Author"),
        "original_link": ("原文链接", "Original"),
        "back_to_top": ("回到顶部", "Back to top"),
        "video": ("视频", "Video"),
        "issue_no": ("{year}年第{number}期", "{year}, No. {number}"),
    }
)

# the subscriber's own pages keep their texts in their own module (issue 13)
from dispatch.web.texts_subscriber import SUBSCRIBER_TEXTS  # noqa: E402

TEXTS.messages.update(SUBSCRIBER_TEXTS)

# the bounce and suppression pages (issue 10)
from dispatch.web.texts_bounces import BOUNCE_TEXTS  # noqa: E402

TEXTS.messages.update(BOUNCE_TEXTS)

# the report pages, exports and trends (issue 14)
from dispatch.web.texts_reports import REPORT_TEXTS  # noqa: E402

TEXTS.messages.update(REPORT_TEXTS)

# the status words, audit log, users and branding pages (issue 19)
from dispatch.web.texts_admin import ADMIN_TEXTS  # noqa: E402

TEXTS.messages.update(ADMIN_TEXTS)

# the Word import form and its report (issue 19 item 1)
from dispatch.web.texts_docx import DOCX_TEXTS  # noqa: E402

TEXTS.messages.update(DOCX_TEXTS)

# the editor's desk: editor, versions, review, scheduling (issue 19)
from dispatch.web.texts_editorial import EDITORIAL_TEXTS  # noqa: E402

TEXTS.messages.update(EDITORIAL_TEXTS)
