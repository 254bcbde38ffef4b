// GOV.UK Frontend styles some components differently once JavaScript is available.
document.body.className += " js-enabled govuk-frontend-supported";
