"""Texts of the subscriber's own pages (subscribe, confirm, preference centre) in zh-CN and
English; merged into dispatch.web.texts.TEXTS so templates use one `_()`."""

SUBSCRIBER_TEXTS: dict[str, tuple[str, str]] = {
    # subscribe form
    "subscribe_title": ("订阅简报", "Subscribe to the bulletin"),
    "subscribe_link": ("订阅", "Subscribe"),
    "subscribe_intro": (
        "填写邮箱即可按月收到简报。我们只用此地址发送简报，可随时退订。",
        "Enter your email to receive the bulletin every month. We use the address for the "
        "bulletin only, and you can leave at any time.",
    ),
    "subscribe_email": ("邮箱", "Email"),
    "subscribe_name": ("姓名（可选）", "Name (optional)"),
    "subscribe_lists": ("订阅内容", "Lists"),
    "subscribe_language": ("语言", "Language"),
    "subscribe_button": ("订阅", "Subscribe"),
    "subscribe_working": ("正在校验…", "Checking…"),
    "subscribe_nojs": (
        "未启用 JavaScript 时也可提交，但每小时可处理的数量有限。",
        "You can send the form without JavaScript too, but only a few such requests are "
        "accepted each hour.",
    ),
    "subscribe_no_lists": ("目前没有开放订阅的列表。", "No list is open for subscription."),
    "subscribe_honeypot": ("请勿填写此项", "Leave this empty"),
    "signup_done_title": ("请查收邮件", "Check your inbox"),
    "signup_done": (
        "谢谢！如需确认，我们已向 {email} 发送一封确认邮件，请点击其中的链接并按下确认按钮。"
        "若未收到，请检查垃圾邮件箱，10 分钟后可再次提交。",
        "Thank you! If a confirmation is needed we have sent one to {email}: open its link and "
        "press the button there. If nothing arrives, check your spam folder; you can ask again "
        "after 10 minutes.",
    ),
    "lang_zh": ("中文", "Chinese (中文)"),
    "lang_en": ("英文 (English)", "English"),
    # confirm (one button: only the POST confirms)
    "confirm_question": (
        "确认以 {email} 订阅：{lists}？",
        "Confirm the subscription of {email} to: {lists}?",
    ),
    "confirm_button": ("确认订阅", "Confirm subscription"),
    "confirm_already": ("此订阅已确认，无需再次操作。", "This subscription is already confirmed."),
    # admin import: double opt-in lists need the administrator's word on consent
    "import_confirmed": (
        "已在别处取得同意（逐条记录）",
        "Consent was collected elsewhere (recorded on each row)",
    ),
    "import_consent_legend": (
        "双重确认列表必须选一项：",
        "For a double opt-in list, choose one:",
    ),
    "import_send_confirmations": (
        "给每人发送确认邮件（限速发送，作为确认邮件活动跟踪；确认前不会收到简报）",
        "Email each person a confirmation (throttled, tracked as a confirmation campaign; "
        "nobody gets the bulletin before confirming)",
    ),
    "import_needs_consent": (
        "这是双重确认列表：请选择“给每人发送确认邮件”或“已在别处取得同意”",
        "This list is double opt-in: choose “email each person a confirmation” or “consent was "
        "collected elsewhere”",
    ),
    "import_confirmation_campaign": (
        "确认邮件活动 #{id} 已排队",
        "Confirmation campaign #{id} queued",
    ),
    "confirmation_emails": ("导入确认邮件", "Import confirmation emails"),
    "channel_confirmation": ("确认邮件", "confirmation email"),
    # admin: one subscriber, and many at once
    "subscriber_title": ("订阅者 #{id}", "Subscriber #{id}"),
    "subscriber_suppressed": ("已屏蔽", "suppressed"),
    "subscriber_created": ("创建于 {at}", "Created {at}"),
    "subscriber_edit": ("编辑", "Edit"),
    "subscriber_delete": ("删除此人", "Delete this person"),
    "subscriber_events": ("全部事件", "Every event"),
    "subscriber_deliveries": ("投递记录", "Deliveries"),
    "consent_source": ("同意来源", "Consent source"),
    "consent_time": ("时间", "Time"),
    "channel": ("渠道", "Channel"),
    "all_statuses": ("全部状态", "all statuses"),
    "bulk_title": ("批量操作", "Bulk action"),
    "bulk_apply": ("对所选执行", "Apply to the selected"),
    "bulk_choose_action": ("请选择一个批量操作。", "Choose a bulk action."),
    "bulk_choose_people": (
        "请勾选订阅者（每次最多 {max} 人）。",
        "Tick the subscribers first (at most {max} at once).",
    ),
    "bulk_add_to_list": ("加入列表", "Add to list"),
    "bulk_remove_from_list": ("移出列表", "Remove from list"),
    "bulk_unsubscribe": ("全部退订", "Unsubscribe from everything"),
    "bulk_delete": ("删除（保留屏蔽）", "Delete (address stays suppressed)"),
    "bulk_question_add_to_list": (
        "将 {n} 位订阅者加入“{list}”（记为管理员操作）？",
        "Add {n} subscribers to “{list}” (recorded as the administrator's action)?",
    ),
    "bulk_question_remove_from_list": (
        "将 {n} 位订阅者移出“{list}”？",
        "Remove {n} subscribers from “{list}”?",
    ),
    "bulk_question_unsubscribe": (
        "让 {n} 位订阅者退订全部列表？",
        "Unsubscribe {n} subscribers from every list?",
    ),
    "bulk_question_delete": (
        "删除 {n} 位订阅者的全部数据？此操作无法撤销，地址会保留在屏蔽名单中。",
        "Delete all data of {n} subscribers? This cannot be undone; the addresses stay suppressed.",
    ),
    "bulk_confirm": ("确认（{n} 人）", "Confirm ({n} people)"),
    "bulk_cancel": ("取消", "Cancel"),
    "list_public": ("公开订阅", "Public"),
    "list_public_help": (
        "出现在 /subscribe 订阅表单和订阅设置中",
        "offered on the /subscribe form and in the preference centre",
    ),
    "list_embed": ("嵌入表单", "Embed form"),
    "list_embed_help": (
        "把下面的 HTML 粘贴到机构网站即可收集订阅（公开标识：{slug}）：",
        "Paste this HTML into your institution's site to collect sign-ups (public id: {slug}):",
    ),
    "list_make_public": ("设为公开", "Make public"),
    "list_make_private": ("设为不公开", "Make private"),
    "campaign_reach": (
        "双渠道发送（#{ids}）：已送达 {people} 人，共 {messages} 条消息（每人按其偏好渠道）",
        "Sent on both channels (#{ids}): {people} people reached by {messages} messages "
        "(each on their preferred channel)",
    ),
    # preference centre
    "prefs_title": ("订阅设置", "Subscription preferences"),
    "prefs_link": ("管理订阅设置", "Manage your preferences"),
    "prefs_lists": ("我的订阅", "My lists"),
    "prefs_channel": ("接收方式", "Receive it by"),
    "channel_email": ("邮件", "Email"),
    "channel_wechat": ("微信", "WeChat"),
    "channel_both": ("邮件和微信", "Email and WeChat"),
    "prefs_save": ("保存设置", "Save"),
    "prefs_saved": ("已保存。", "Saved."),
    "prefs_email_change": ("更换邮箱", "Change email address"),
    "prefs_email_change_sent": (
        "我们已向新地址发送确认邮件；确认后才会更换。",
        "We sent a confirmation to the new address; the change takes effect once confirmed.",
    ),
    "prefs_email_changed": ("邮箱已更换。", "Your email address is changed."),
    "prefs_email_taken": (
        "无法更换到此地址（已被使用或被屏蔽）。",
        "This address cannot be used (it is taken or blocked).",
    ),
    "prefs_unsub_all": ("退订全部", "Unsubscribe from everything"),
    "prefs_download": ("下载我的数据（JSON）", "Download my data (JSON)"),
    "prefs_delete": ("删除我的全部数据", "Delete all my data"),
    "prefs_delete_warning": (
        "删除后无法恢复。为防止再次误发，此邮箱会保留在屏蔽名单中。",
        "This cannot be undone. The address stays on the suppression list so that nothing is "
        "ever sent to it again.",
    ),
    "prefs_deleted": (
        "您的数据已删除，此地址今后不会再收到任何邮件。",
        "Your data is deleted; this address will receive nothing more from us.",
    ),
    "prefs_invalid": ("设置链接无效或已过期。", "This preferences link is invalid or has expired."),
    "prefs_wechat_title": ("绑定微信", "Link your WeChat"),
    "prefs_wechat_bound": ("已绑定微信。", "Your WeChat is linked."),
    "prefs_wechat_code": (
        "在微信中向公众号发送以下验证码即可绑定（30 分钟内有效）：",
        "Send this code to our Official Account in WeChat to link it (valid for 30 minutes):",
    ),
    "prefs_wechat_code_button": ("获取验证码", "Get a code"),
    "prefs_wechat_oauth": (
        "在微信中打开此页可一键绑定。",
        "Open this page in WeChat to link it in one tap.",
    ),
    "prefs_wechat_oauth_button": ("用微信绑定", "Link with WeChat"),
    "prefs_wechat_failed": ("微信绑定失败：{reason}", "Linking WeChat failed: {reason}"),
    "prefs_name": ("姓名", "Name"),
    "prefs_address": ("邮箱", "Email"),
    "prefs_none": ("（无）", "(none)"),
}
