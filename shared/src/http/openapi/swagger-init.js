// Starts Swagger UI on this service's own OpenAPI document, served beside this page (the page
// is `<base>/docs`, the document `<base>/openapi.json`). Loaded from a file, not inline, so
// that the page's Content-Security-Policy can refuse every inline script.
(function () {
  "use strict";
  // The page's path before `/docs`: empty on the local server, the stage (`/prod`) or a
  // custom domain's base path behind API Gateway. The document lists no `servers`, so
  // Swagger UI would send "Try it out" requests to the origin's root; they go under the
  // same base as this page instead.
  var base = window.location.pathname.replace(/\/docs\/?$/, "");
  window.ui = window.SwaggerUIBundle({
    url: new URL("openapi.json", window.location.href).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayRequestDuration: true,
    // Never keep a pasted access token in localStorage.
    persistAuthorization: false,
    // No badge that sends the document to an outside validator.
    validatorUrl: null,
    requestInterceptor: function (request) {
      if (base && !request.loadSpec) {
        var url = new URL(request.url, window.location.href);
        if (url.origin === window.location.origin && url.pathname.indexOf(base + "/") !== 0) {
          url.pathname = base + url.pathname;
          request.url = url.href;
        }
      }
      return request;
    },
  });
})();
