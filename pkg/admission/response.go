package admission

import (
	"encoding/base64"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
)

// appendReview appends the admission.k8s.io/v1 AdmissionReview carrying
// resp. It writes the few fields a response has by hand: reflecting over
// the AdmissionReview cost as much as the injection itself.
func appendReview(b []byte, resp *admissionv1.AdmissionResponse) []byte {
	b = append(b, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":`...)
	b = appendString(b, string(resp.UID))
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, resp.Allowed)
	if r := resp.Result; r != nil {
		b = append(b, `,"status":{"metadata":{},"status":`...)
		b = appendString(b, r.Status)
		b = append(b, `,"message":`...)
		b = appendString(b, r.Message)
		if r.Reason != "" {
			b = append(b, `,"reason":`...)
			b = appendString(b, string(r.Reason))
		}
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(r.Code), 10)
		b = append(b, '}')
	}
	if resp.Patch != nil {
		b = append(b, `,"patch":"`...)
		b = base64.StdEncoding.AppendEncode(b, resp.Patch)
		b = append(b, '"')
	}
	if resp.PatchType != nil {
		b = append(b, `,"patchType":`...)
		b = appendString(b, string(*resp.PatchType))
	}
	if len(resp.Warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range resp.Warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}}"...)
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does.
func appendString(b []byte, s string) []byte {
	b, _ = jsontext.AppendQuote(b, s)
	return b
}
