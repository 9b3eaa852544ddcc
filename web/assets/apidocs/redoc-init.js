// Starts ReDoc on OneFlow's own document (outside the HTML, so the page's
// Content-Security-Policy can forbid inline scripts).
(function () {
  var root = document.getElementById("redoc");
  Redoc.init(root.getAttribute("data-spec-url"), { hideDownloadButton: false }, root);
})();
