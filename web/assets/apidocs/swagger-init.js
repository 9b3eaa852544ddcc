// Starts Swagger UI on OneFlow's own document. Kept out of the HTML so the
// page's Content-Security-Policy can forbid inline scripts.
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The default asks an online validator for a badge: never leave the host.
    validatorUrl: null,
    // A key typed here stays in this page's memory, never in localStorage.
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
})();
