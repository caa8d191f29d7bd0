// Live progress of a running campaign (admin campaign page). A file, not an inline script,
// so the pages' Content-Security-Policy can forbid inline script altogether.
(function () {
  var me = document.currentScript, url = me && me.dataset.progressUrl;
  if (!url) { return; }
  var bar = document.getElementById('progress-bar'), text = document.getElementById('progress-text'),
      detail = document.getElementById('progress-detail'), badge = document.getElementById('status-badge');
  function poll() {
    fetch(url, {credentials: 'same-origin'}).then(function (r) { return r.json(); }).then(function (p) {
      var pct = p.total ? 100 * p.done / p.total : 0;
      bar.style.width = pct.toFixed(1) + '%';
      text.textContent = Math.round(pct) + ' %';
      detail.textContent = p.done + ' / ' + p.total + ' · ' + p.rate_per_second + '/s';
      // the status word in the page's language (the page lists them in #status-words)
      var word = document.querySelector('#status-words [data-w="' + p.status + '"]');
      badge.textContent = word ? word.textContent : p.status; badge.className = 'badge ' + p.status;
      if (p.status === 'running' || p.status === 'scheduled') { setTimeout(poll, 1000); } else { setTimeout(function () { location.reload(); }, 500); }
    }).catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
