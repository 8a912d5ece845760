// Package certs makes development certificates for the webhook: a CA and a
// serving certificate for the Service's DNS names, rotated by reissuing
// the serving certificate from the same CA so the webhook's caBundle stays
// valid.
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names written to the output directory.
const (
	CACert     = "ca.crt"
	CAKey      = "ca.key"
	ServerCert = "tls.crt"
	ServerKey  = "tls.key"
)

// Options say what to issue.
type Options struct {
	// Service and Namespace give the DNS names <service>.<namespace>.svc
	// and <service>.<namespace>.svc.cluster.local.
	Service, Namespace string
	// Hosts are extra DNS names or IP addresses (localhost, 127.0.0.1).
	Hosts []string
	// Validity of the serving certificate; the CA gets ten times as long.
	Validity time.Duration
	// Now is the issue time; time.Now if zero.
	Now time.Time
}

// Result reports what Write did.
type Result struct {
	CAReused bool
	CAPEM    []byte
	NotAfter time.Time
	DNSNames []string
}

// Write issues a serving certificate into dir, reusing the CA there when it
// is still valid for the new certificate's lifetime, else making a new CA.
// Files are replaced atomically; keys are written with mode 0600.
func Write(dir string, o Options) (*Result, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Validity <= 0 {
		return nil, fmt.Errorf("validity %s must be positive", o.Validity)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	names := dnsNames(o)
	if len(names) == 0 {
		return nil, errors.New("no names to certify: give a service and namespace, or hosts")
	}
	res := &Result{NotAfter: o.Now.Add(o.Validity), DNSNames: names}
	ca, caKey, reused, err := ensureCA(dir, o.Now, o.Validity, res.NotAfter)
	if err != nil {
		return nil, err
	}
	res.CAReused, res.CAPEM = reused, pemBlock("CERTIFICATE", ca.Raw)
	if err := writeServing(dir, o.Now, res, ca, caKey); err != nil {
		return nil, err
	}
	return res, nil
}

// ensureCA loads the CA in dir when it outlives notAfter, or makes and
// writes a new one that lasts ten times validity.
func ensureCA(dir string, now time.Time, validity time.Duration, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, bool, error) {
	ca, caKey, err := loadCA(dir, notAfter)
	switch {
	case err == nil:
		return ca, caKey, true, nil
	case !errors.Is(err, os.ErrNotExist) && !errors.Is(err, errCAExpiring):
		return nil, nil, false, err
	}
	if ca, caKey, err = newCA(now, 10*validity); err != nil {
		return nil, nil, false, err
	}
	if err := writeFile(dir, CACert, pemBlock("CERTIFICATE", ca.Raw), 0o644); err != nil {
		return nil, nil, false, err
	}
	keyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, nil, false, err
	}
	if err := writeFile(dir, CAKey, pemBlock("EC PRIVATE KEY", keyDER), 0o600); err != nil {
		return nil, nil, false, err
	}
	return ca, caKey, false, nil
}

// writeServing issues the serving certificate for res.DNSNames, signed
// by ca, and writes it with its key.
func writeServing(dir string, now time.Time, res *Result, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: res.DNSNames[0]},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     res.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range res.DNSNames {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	// The key first: certwatcher reloads on either file, and a new key
	// with the old certificate fails to load and is retried, while the
	// reverse pair would serve nothing either; both land within one event.
	if err := writeFile(dir, ServerKey, pemBlock("EC PRIVATE KEY", keyDER), 0o600); err != nil {
		return err
	}
	if err := writeFile(dir, ServerCert, append(pemBlock("CERTIFICATE", der), res.CAPEM...), 0o644); err != nil {
		return err
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCert), filepath.Join(dir, ServerKey)); err != nil {
		return fmt.Errorf("written pair does not load: %w", err)
	}
	return nil
}

func dnsNames(o Options) []string {
	var names []string
	if o.Service != "" && o.Namespace != "" {
		base := o.Service + "." + o.Namespace + ".svc"
		names = append(names, base, base+".cluster.local")
	}
	return append(names, o.Hosts...)
}

var errCAExpiring = errors.New("CA expires before the new certificate would")

func loadCA(dir string, until time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACert))
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKey))
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s or %s in %s is not PEM", CACert, CAKey, dir)
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", CACert, err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", CAKey, err)
	}
	if ca.NotAfter.Before(until) {
		return nil, nil, errCAExpiring
	}
	return ca, key, nil
}

func newCA(now time.Time, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "sidecar-injector development CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126)) // crypto/rand never fails on Linux
	return n
}

func pemBlock(kind string, der []byte) []byte {
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: kind, Bytes: der}) // writing to a buffer cannot fail
	return b.Bytes()
}

// writeFile replaces dir/name atomically.
func writeFile(dir, name string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}
