// Package admission owns the admission protocol of the webhook: it decodes
// AdmissionReview requests with limits, keeps the request UID, recovers
// panics, calls the injection engine, turns its plan into a JSON Patch and
// answers, recording one metric outcome and one log line per request.
package admission
