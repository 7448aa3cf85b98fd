// Starts Swagger UI on the admin's API page (a file, not an inline script: the CSP allows no inline code).
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({ url: root.dataset.schema, domNode: root, deepLinking: false });
})();
