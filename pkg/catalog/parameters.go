package catalog

import (
	"errors"
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ParameterType gives a parameter a built-in check and a normal form.
type ParameterType string

// The parameter types.
const (
	// String is any text; without a validation regex, printable text
	// with no braces and no shell metacharacters.
	String ParameterType = "string"
	// Path is an absolute, cleaned path with no ".." segment, not "/".
	Path ParameterType = "path"
	// Port is a TCP or UDP port, 1 to 65535.
	Port ParameterType = "port"
	// HostPort is host:port, with a DNS name or IP address and a Port.
	HostPort ParameterType = "hostport"
	// Duration is a Go duration such as 30s or 5m.
	Duration ParameterType = "duration"
	// Quantity is a Kubernetes quantity such as 100m or 64Mi.
	Quantity ParameterType = "quantity"
)

// ParameterTypes lists the valid types, for error messages.
var ParameterTypes = []ParameterType{String, Path, Port, HostPort, Duration, Quantity}

// ShellMeta are the characters a string or path value never holds
// unless the parameter's own validation regex admits them, so a template
// that hands a value to a shell cannot be turned into a command, a
// comment or an end of quoting. The other types parse to a closed form
// (a number, host:port, a duration, a quantity) that holds none but an
// IPv6 address's brackets.
const ShellMeta = ";|&$`\\<>{}#'\"()*?[]~!"

// MaxValueBytes caps a parameter's value: longer than any path, address
// or setting a sidecar takes, short enough that the rendered variants the
// catalog keeps per template stay small.
const MaxValueBytes = 1024

// Check returns value in its normal form if it passes the parameter's
// type check and validation regex, or an error that says what is wrong
// and what is expected. No value holds a rune that is not printable
// (control characters, C1 controls, line and paragraph separators,
// bidirectional overrides) or invalid UTF-8, whatever its regex says.
func (p *Parameter) Check(value string) (string, error) {
	if len(value) > MaxValueBytes {
		return "", fmt.Errorf("%d bytes long; at most %d", len(value), MaxValueBytes)
	}
	if !utf8.ValidString(value) {
		return "", errors.New("not valid UTF-8")
	}
	for _, r := range value {
		if !unicode.IsPrint(r) {
			return "", fmt.Errorf("character %U not allowed: not printable", r)
		}
	}
	if p.Validation == "" && (p.Type == "" || p.Type == String || p.Type == Path) {
		if i := strings.IndexAny(value, ShellMeta); i >= 0 {
			return "", fmt.Errorf("character %q not allowed", value[i])
		}
	}
	var err error
	switch p.Type {
	case "", String:
	case Path:
		value, err = cleanPath(value)
	case Port:
		value, err = port(value)
	case HostPort:
		value, err = hostPort(value)
	case Duration:
		var d time.Duration
		if d, err = time.ParseDuration(value); err == nil && d < 0 {
			err = errors.New("must not be negative")
		}
	case Quantity:
		var q resource.Quantity
		if q, err = resource.ParseQuantity(value); err == nil {
			value = q.String()
		}
	default:
		return "", fmt.Errorf("unknown type %q", p.Type)
	}
	if err != nil {
		return "", err
	}
	if p.Validation != "" && !p.re.MatchString(value) {
		return "", errors.New("no match for the validation")
	}
	return value, nil
}

// Expects says what a valid value looks like, for error messages.
func (p *Parameter) Expects() string {
	var s string
	switch p.Type {
	case Path:
		s = `an absolute path without ".." segments, not "/"`
	case Port:
		s = "a port number from 1 to 65535"
	case HostPort:
		s = "host:port with a port from 1 to 65535"
	case Duration:
		s = "a duration such as 30s"
	case Quantity:
		s = "a quantity such as 100m or 64Mi"
	default:
		if p.Validation == "" {
			return "printable text without any of " + ShellMeta
		}
		return "text matching ^" + p.Validation + "$"
	}
	switch {
	case p.Validation != "":
		s += ", matching ^" + p.Validation + "$"
	case p.Type == Path:
		s += ", without white space or any of " + ShellMeta
	}
	return s
}

func cleanPath(value string) (string, error) {
	if !strings.HasPrefix(value, "/") {
		return "", errors.New("must be an absolute path")
	}
	if i := strings.IndexFunc(value, unicode.IsSpace); i >= 0 {
		return "", errors.New("must not hold white space")
	}
	for seg := range strings.SplitSeq(value, "/") {
		if seg == ".." {
			return "", errors.New(`must not hold a ".." segment`)
		}
	}
	clean := path.Clean(value)
	if clean == "/" {
		return "", errors.New(`must not be "/"`)
	}
	return clean, nil
}

func port(value string) (string, error) {
	n, err := strconv.Atoi(value)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", value)
	}
	return strconv.Itoa(n), nil
}

func hostPort(value string) (string, error) {
	host, p, err := net.SplitHostPort(value)
	if err != nil {
		return "", fmt.Errorf("must be host:port: %w", err)
	}
	if p, err = port(p); err != nil {
		return "", err
	}
	if net.ParseIP(host) == nil {
		if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 {
			return "", fmt.Errorf("host %q is not a DNS name or IP address", host)
		}
	}
	return net.JoinHostPort(host, p), nil
}

// validateParameters checks each parameter and compiles its regex; it
// returns the names declared.
func validateParameters(ps []Parameter, p *field.Path) (map[string]bool, field.ErrorList) {
	var errs field.ErrorList
	names := map[string]bool{}
	for i := range ps {
		pp := p.Index(i)
		prm := &ps[i]
		errs = append(errs, dnsLabel(prm.Name, pp.Child("name"))...)
		if slices.Contains(ReservedParameters, prm.Name) {
			errs = append(errs, field.Invalid(pp.Child("name"), prm.Name, fmt.Sprintf("reserved for resource overrides (%v); choose another name", ReservedParameters)))
		}
		if names[prm.Name] {
			errs = append(errs, field.Duplicate(pp.Child("name"), prm.Name))
		}
		names[prm.Name] = true
		if prm.Type != "" && !slices.Contains(ParameterTypes, prm.Type) {
			errs = append(errs, field.NotSupported(pp.Child("type"), prm.Type, ParameterTypes))
			continue
		}
		if prm.Validation != "" {
			re, err := regexp.Compile("^(?:" + prm.Validation + ")$")
			if err != nil {
				errs = append(errs, field.Invalid(pp.Child("validation"), prm.Validation, err.Error()))
				continue
			}
			prm.re = re
		}
		if prm.Default != "" {
			// Checked and normalised as an annotation's value is, so a
			// default renders and hashes as the same value given.
			clean, err := prm.Check(prm.Default)
			if err != nil {
				errs = append(errs, field.Invalid(pp.Child("default"), prm.Default, err.Error()))
			}
			prm.Default = clean
		}
		if prm.Required && prm.Default != "" {
			errs = append(errs, field.Invalid(pp.Child("required"), true, "a required parameter has no default"))
		}
	}
	return names, errs
}
