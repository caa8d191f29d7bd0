"""The Word import's admin texts (issue 19 item 1), merged into dispatch.web.texts.TEXTS."""

DOCX_TEXTS = {
    "docx_import": ("从 Word 导入", "Import from Word"),
    "docx_import_hint": (
        "上传简报的 .docx 文件：栏目标题用“标题 1”或【栏目】，文章标题用“标题 2”或加粗，"
        "来源行写“来源：… 时间：…”。文档没有写的期号、网址名和来源网址可在下面填写，"
        "其余由导入程序推测并列出，请核对。",
        "Upload the bulletin's .docx: section titles as Heading 1 or 【…】, article titles as "
        "Heading 2 or bold, a 来源：… 时间：… line under each title. What the document does "
        "not say (issue number, slug, source URL) can be given below; the rest is guessed "
        "and listed for you to check.",
    ),
    "docx_file": ("Word 文档（.docx）", "Word document (.docx)"),
    "docx_number": ("期号（可选）", "Issue number (optional)"),
    "docx_slug": ("网址名（可选，如 2023-02）", "Slug (optional, e.g. 2023-02)"),
    "docx_source_url": ("缺省来源网址（可选）", "Default source URL (optional)"),
    "docx_publisher": ("发布单位（可选）", "Publisher (optional)"),
    "docx_submit": ("导入并发布", "Import and publish"),
    "docx_imported": (
        "已从 Word 导入并发布期刊“{title}”（{slug}）。请核对下列推测后再发送。",
        "Imported from Word and published “{title}” ({slug}). Check the guesses below "
        "before sending.",
    ),
    "docx_failed": ("Word 导入失败：{reason}", "The Word import failed: {reason}"),
    "docx_report": ("导入报告", "Import report"),
    "docx_kept": ("已保留", "Kept"),
    "docx_guessed": ("推测，请核对", "Guessed, please check"),
    "docx_not_kept": ("未保留", "Not kept"),
    "docx_where": ("位置", "Where"),
    "docx_what": ("说明", "What"),
    "docx_nothing_stored": ("未保存任何内容。", "Nothing was stored."),
    "docx_open_preview": ("打开预览", "Open the preview"),
    "docx_kept_sections": ("栏目", "sections"),
    "docx_kept_articles": ("文章", "articles"),
    "docx_kept_paragraphs": ("段落", "paragraphs"),
    "docx_kept_images": ("图片", "pictures"),
    "docx_kept_sidebars": ("专栏", "sidebars"),
}
