package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// clientCA makes a CA and a client certificate it signs, as the API
// server's admission kubeconfig would present; the CA goes to a file.
func clientCA(t *testing.T) (caFile string, client tls.Certificate) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, clientKey := key(), key()
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "api server client CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	clientTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	clientDER, err := x509.CreateCertificate(rand.Reader, clientTmpl, ca, &clientKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "client-ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{clientDER}, PrivateKey: clientKey}
}

// With --client-ca-file, only a client with a certificate from that CA
// gets an answer; the rest fail the TLS handshake.
func TestClientCertificateRequired(t *testing.T) {
	caFile, cert := clientCA(t)
	s := start(t, func(o *Options) { o.ClientCAFile = caFile })

	if _, err := s.send(s.client, bytes.NewReader(reviewFor("u1", "content-filler"))); err == nil {
		t.Error("a client without a certificate got an answer")
	}

	_, stranger := clientCA(t) // signed by another CA
	for name, c := range map[string]struct {
		cert tls.Certificate
		ok   bool
	}{"the CA's client": {cert, true}, "another CA's client": {stranger, false}} {
		client := s.newClient(t, true)
		client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{c.cert}
		resp, err := s.send(client, bytes.NewReader(reviewFor("u2", "content-filler")))
		switch {
		case c.ok && (err != nil || !resp.Allowed || resp.Patch == nil):
			t.Errorf("%s: %v %+v", name, err, resp)
		case !c.ok && err == nil:
			t.Errorf("%s got an answer", name)
		}
	}
}
