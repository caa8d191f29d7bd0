// Starts Swagger UI on /api/docs from the package's own copy (swagger-ui-bundle): no CDN,
// and a file rather than an inline script, so the page keeps the strict CSP.
(function () {
  var me = document.currentScript;
  window.SwaggerUIBundle({
    url: me.dataset.openapiUrl,
    dom_id: '#swagger-ui',
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    deepLinking: true
  });
})();
