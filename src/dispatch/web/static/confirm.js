// Forms with data-confirm ask before they submit (admin pages). A file, not an onsubmit
// attribute, so the pages' Content-Security-Policy can forbid inline script.
document.addEventListener('submit', function (event) {
  var form = event.target, text = form && form.dataset ? form.dataset.confirm : null;
  if (text && !window.confirm(text)) { event.preventDefault(); }
}, true);
