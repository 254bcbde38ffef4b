// Starts GOV.UK Frontend's components and gives every htmx request the page's CSRF token.
import { initAll } from "../vendor/govuk/govuk-frontend.min.js";

initAll();

const token = document.querySelector('meta[name="csrf-token"]')?.content;
document.body.addEventListener("htmx:configRequest", (event) => {
  if (token) {
    event.detail.headers["X-CSRFToken"] = token;
  }
});
