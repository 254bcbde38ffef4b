// Work queues: when htmx cannot finish a claim, release, assign or filter (an expired form, a
// refusal sent with an error status, the network), do it again the ordinary way, without
// JavaScript, so that the person sees the server's own page and its message.
document.body.addEventListener("htmx:responseError", (event) => {
  const form = event.detail.elt;
  if (form instanceof HTMLFormElement) {
    form.submit();
  }
});
document.body.addEventListener("htmx:sendError", (event) => {
  const form = event.detail.elt;
  if (form instanceof HTMLFormElement) {
    form.submit();
  }
});
