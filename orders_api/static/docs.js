// Swagger UI on this API's own document. No top bar (it would offer to load other URLs), no
// online validator (validatorUrl null: the badge would call a server elsewhere).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  validatorUrl: null,
  displayRequestDuration: true,
  docExpansion: "list",
  defaultModelsExpandDepth: 1,
  showCommonExtensions: true,
});
