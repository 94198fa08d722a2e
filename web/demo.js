// The demo page's one call to the widget, with the values web/server.py put on <body>.
ClinicChat.init({
  serverUrl: document.body.dataset.chatServer,
  phone: document.body.dataset.clinicPhone,
  technicalProblem: document.body.dataset.technicalProblem,
  transports: document.body.dataset.chatTransports ? document.body.dataset.chatTransports.split(",") : undefined
});
