// Starts GOV.UK Frontend's components and gives every htmx request the page's CSRF token.
import { initAll } from "../vendor/govuk/govuk-frontend.min.js";

initAll();

const token = document.querySelector('meta[name="csrf-token"]')?.content;
document.body.addEventListener("htmx:configRequest", (event) => {
  if (token) {
    event.detail.headers["X-CSRFToken"] = token;
  }
});

// htmx injects a <style> for its request indicator on DOMContentLoaded, which the
// Content-Security-Policy refuses; the same rules are in frontdoor.scss instead.
// (This module runs after htmx.min.js has loaded and before DOMContentLoaded.)
if (window.htmx) {
  window.htmx.config.includeIndicatorStyles = false;
}
