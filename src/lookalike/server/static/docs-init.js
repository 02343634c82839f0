// Starts Swagger UI on /docs over this server's OpenAPI document; a file, not an inline
// script, so that the server's Content-Security-Policy holds. No validator: it is elsewhere.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
