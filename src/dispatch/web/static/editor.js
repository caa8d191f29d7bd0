// The issue editor (admin/issue_edit.html): line numbers with problems marked at their line,
// a live check and preview as you type (POST /api/issues/<id>/source/check), and images
// uploaded by drag and drop or the file field (POST /api/issues/<id>/media). No framework,
// no CDN; without this file the form still saves and the server shows the problems.
(function () {
  'use strict';
  var root = document.getElementById('editor');
  if (!root) { return; }
  var issue = root.dataset.issue, csrf = root.dataset.csrf;
  var source = document.getElementById('source');
  var gutter = document.getElementById('gutter');
  var status = document.getElementById('check-status');
  var list = document.getElementById('problems');
  var wrap = document.getElementById('editor-wrap');
  var fileInput = document.getElementById('image-file');
  var badLines = {}, timer = null, pending = null, seq = 0;

  function text(key, name, value) {
    var t = root.dataset[key] || '';
    return name ? t.split('{' + name + '}').join(value) : t;
  }

  function drawGutter() {
    var count = source.value.split('\n').length, out = [];
    for (var i = 1; i <= count; i++) {
      var bad = badLines[i];
      out.push('<span data-line="' + i + '"' + (bad ? ' class="bad" title="' +
        bad.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;') + '"' : '') +
        '>' + i + '</span>');
    }
    gutter.innerHTML = out.join('');
    gutter.scrollTop = source.scrollTop;
  }

  function goToLine(line) {
    var lines = source.value.split('\n'), start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) { start += lines[i].length + 1; }
    source.focus();
    source.setSelectionRange(start, start + (lines[line - 1] || '').length);
    var height = source.scrollHeight / Math.max(lines.length, 1);
    source.scrollTop = Math.max(0, (line - 3) * height);
  }

  function showProblems(problems) {
    badLines = {};
    list.innerHTML = '';
    problems.forEach(function (p) {
      badLines[p.line] = (badLines[p.line] ? badLines[p.line] + '\n' : '') + p.message;
      var li = document.createElement('li');
      li.dataset.line = p.line;
      var jump = document.createElement('button');
      jump.type = 'button';
      jump.className = 'link';
      jump.textContent = text('msgLine', 'line', p.line);
      jump.addEventListener('click', function () { goToLine(p.line); });
      li.appendChild(jump);
      li.appendChild(document.createTextNode(': ' + p.message));
      list.appendChild(li);
    });
    drawGutter();
  }

  function wechatPage(articles) {
    var parts = ['<!doctype html><meta charset="utf-8"><body style="margin:0;padding:8px;' +
      'font-family:sans-serif;background:#ededed">'];
    articles.forEach(function (a) {
      parts.push('<section style="background:#fff;margin:0 0 10px;padding:10px;' +
        'border-radius:6px;overflow-wrap:anywhere">');
      if (a.thumb_url) {
        parts.push('<img src="' + a.thumb_url + '" alt="" style="width:100%;' +
          'aspect-ratio:2.35/1;object-fit:cover;border-radius:4px">');
      }
      var title = document.createElement('h3');
      title.textContent = a.title;
      parts.push(title.outerHTML);
      parts.push('<div>' + a.content + '</div></section>');
    });
    parts.push('<style>img,table{max-width:100%;height:auto}</style></body>');
    return parts.join('');
  }

  function showPreview(data) {
    if (data.email_html) {
      document.getElementById('live-email-375').srcdoc = data.email_html;
      document.getElementById('live-email-600').srcdoc = data.email_html;
    }
    if (data.wechat) {
      document.getElementById('live-wechat').srcdoc = wechatPage(data.wechat);
    }
  }

  function check() {
    var mine = ++seq;
    if (pending) { pending.abort(); }
    pending = new AbortController();
    status.textContent = text('msgChecking');
    fetch('/api/issues/' + issue + '/source/check', {
      method: 'POST',
      signal: pending.signal,
      credentials: 'same-origin',
      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
      body: JSON.stringify({text: source.value, preview: true})
    }).then(function (r) {
      return r.json().then(function (body) { return {ok: r.ok, body: body}; });
    }).then(function (res) {
      if (mine !== seq) { return; }
      if (!res.ok) { throw new Error(res.body.detail || 'HTTP error'); }
      showProblems(res.body.problems || []);
      if (res.body.ok) {
        status.textContent = text('msgOk');
        status.dataset.state = 'ok';
        showPreview(res.body);
      } else {
        status.textContent = text('msgProblems', 'count', res.body.problems.length);
        status.dataset.state = 'problems';
      }
    }).catch(function (err) {
      if (err.name === 'AbortError') { return; }
      status.textContent = text('msgCheckFailed', 'reason', String(err.message || err));
      status.dataset.state = 'failed';
    });
  }

  function schedule() {
    drawGutter();
    clearTimeout(timer);
    timer = setTimeout(check, 500);
  }

  function insertAtCursor(snippet) {
    var at = source.selectionStart, end = source.selectionEnd, v = source.value;
    var before = v.slice(0, at), after = v.slice(end);
    var lead = before && !before.endsWith('\n') ? '\n\n' : '';
    source.value = before + lead + snippet + '\n' + after;
    var caret = (before + lead + snippet + '\n').length;
    source.setSelectionRange(caret, caret);
    schedule();
  }

  function upload(file) {
    var form = new FormData();
    form.append('file', file, file.name);
    status.textContent = text('msgUploading');
    fetch('/api/issues/' + issue + '/media', {
      method: 'POST', credentials: 'same-origin', headers: {'X-CSRF-Token': csrf}, body: form
    }).then(function (r) {
      return r.json().then(function (body) { return {ok: r.ok, body: body}; });
    }).then(function (res) {
      if (!res.ok) { throw new Error(res.body.detail || 'HTTP error'); }
      var alt = file.name.replace(/\.[^.]+$/, '').replace(/[\[\]]/g, '');
      insertAtCursor('![' + alt + '](' + res.body.src + ')');
    }).catch(function (err) {
      status.textContent = text('msgUploadFailed', 'reason', String(err.message || err));
      status.dataset.state = 'failed';
    });
  }

  source.addEventListener('input', schedule);
  source.addEventListener('scroll', function () { gutter.scrollTop = source.scrollTop; });
  fileInput.addEventListener('change', function () {
    Array.prototype.forEach.call(fileInput.files, upload);
    fileInput.value = '';
  });
  wrap.addEventListener('dragover', function (e) {
    e.preventDefault();
    wrap.classList.add('dragging');
  });
  wrap.addEventListener('dragleave', function () { wrap.classList.remove('dragging'); });
  wrap.addEventListener('drop', function (e) {
    e.preventDefault();
    wrap.classList.remove('dragging');
    Array.prototype.forEach.call(e.dataTransfer.files || [], upload);
  });
  drawGutter();
  check();
}());
