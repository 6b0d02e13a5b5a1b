package pool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/httvps/httvps/control/pool/outlinefake"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

func outlineBackend(t *testing.T, apiURL, pin string) *outline {
	t.Helper()
	o, err := newOutline("127.0.0.1", store.OutlineConfig{APIURL: apiURL, CertSHA256: pin}, Config{}.withDefaults(), "")
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOutlineCreateUsesChosenID(t *testing.T) {
	fake := outlinefake.Start(t, outlinefake.Options{})
	o := outlineBackend(t, fake.APIURL, fake.CertSHA256)
	ctx := ctxT(t)
	id, pw := store.NewID(), newPassword()
	upstream, keyID, err := o.CreateKey(ctx, id, "aes-256-gcm", pw)
	if err != nil {
		t.Fatal(err)
	}
	if keyID != id || upstream != "127.0.0.1:9" {
		t.Fatalf("CreateKey = %q, %q", upstream, keyID)
	}
	keys := fake.Keys()
	if len(keys) != 1 || keys[0].ID != id || keys[0].Name != id || keys[0].Method != "aes-256-gcm" || keys[0].Password != pw {
		t.Fatalf("fake holds %+v", keys)
	}
	if got := fake.Requests(); len(got) != 1 || got[0] != "PUT /access-keys/"+id {
		t.Fatalf("requests %q", got)
	}

	// A retry with the same secret is the same key; another secret is a conflict.
	if _, k2, err := o.CreateKey(ctx, id, "aes-256-gcm", pw); err != nil || k2 != id {
		t.Fatalf("idempotent CreateKey = %q, %v", k2, err)
	}
	_, _, err = o.CreateKey(ctx, id, "aes-256-gcm", "other")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !errors.Is(err, ErrBackend) {
		t.Fatalf("conflicting CreateKey: %v", err)
	}
	// The fake validates the body like Outline: 400 for a bad method.
	_, _, err = o.CreateKey(ctx, store.NewID(), "rc4-md5", pw)
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != "InvalidArgument" {
		t.Fatalf("bad method: %v", err)
	}

	if err := o.DeleteKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	if len(fake.Keys()) != 0 {
		t.Fatal("key still on the fake")
	}
	if err := o.DeleteKey(ctx, id); err != nil {
		t.Fatalf("deleting a deleted key: %v", err)
	}
}

func TestOutlineWrongPrefix(t *testing.T) {
	fake := outlinefake.Start(t, outlinefake.Options{})
	base := fake.APIURL[:strings.LastIndex(fake.APIURL, "/")]
	o := outlineBackend(t, base+"/not-the-secret", fake.CertSHA256)
	_, _, err := o.Health(ctxT(t))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("Health with a wrong prefix: %v", err)
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Fatalf("error shows the prefix: %v", err)
	}
	if len(fake.Requests()) != 0 {
		t.Fatal("a request passed the prefix filter")
	}
}

func TestOutlineCertPinMismatch(t *testing.T) {
	fake := outlinefake.Start(t, outlinefake.Options{})
	other := testpeer.SelfSignedCert(t)
	sum := sha256.Sum256(other.Cert.Certificate[0])
	o := outlineBackend(t, fake.APIURL, hex.EncodeToString(sum[:]))
	ctx := ctxT(t)
	if _, _, err := o.Health(ctx); !errors.Is(err, ErrCertPin) {
		t.Fatalf("Health with another certificate's pin: %v", err)
	}
	if _, _, err := o.CreateKey(ctx, "x", testMethod, "pw"); !errors.Is(err, ErrCertPin) {
		t.Fatalf("CreateKey: %v", err)
	}
	if len(fake.Requests()) != 0 {
		t.Fatal("a request reached the server despite the pin")
	}

	// The same fake, serving the other certificate, is accepted by that pin.
	fake2 := outlinefake.Start(t, outlinefake.Options{Cert: &other.Cert})
	o2 := outlineBackend(t, fake2.APIURL, hex.EncodeToString(sum[:]))
	if _, _, err := o2.Health(ctx); err != nil {
		t.Fatalf("Health with the right pin: %v", err)
	}
}

func TestOutlineServerInfoAndTransfer(t *testing.T) {
	fake := outlinefake.Start(t, outlinefake.Options{})
	o := outlineBackend(t, fake.APIURL, fake.CertSHA256)
	ctx := ctxT(t)
	info, err := o.server(ctx)
	if err != nil || info.ServerID == "" || info.PortForNewAccessKeys == 0 {
		t.Fatalf("server info %+v, %v", info, err)
	}
	for _, id := range []string{"a", "b"} {
		if _, _, err := o.CreateKey(ctx, id, testMethod, newPassword()); err != nil {
			t.Fatal(err)
		}
	}
	fake.SetTransfer("a", 100)
	fake.SetTransfer("b", 23)
	tr, err := o.Transfer(ctx)
	if err != nil || len(tr) != 2 || tr["a"] != 100 || tr["b"] != 23 {
		t.Fatalf("Transfer = %v, %v", tr, err)
	}
	// Health counts keys (nothing listens on the fake's port 9 here, so
	// the probe fails: that is the point of probing).
	keys, _, err := o.Health(ctx)
	if keys != 2 || err == nil {
		t.Fatalf("Health = %d, %v; want 2 keys and a refused probe", keys, err)
	}
}

// TestOutlineFakeFollowsAPI pins the fake's own behaviour to the published
// API, since the backend tests rely on it.
func TestOutlineFakeFollowsAPI(t *testing.T) {
	fake := outlinefake.Start(t, outlinefake.Options{})
	sum, _ := hex.DecodeString(fake.CertSHA256)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if s := sha256.Sum256(cs.PeerCertificates[0].Raw); !bytes.Equal(s[:], sum) {
				return ErrCertPin
			}
			return nil
		},
	}}}
	do := func(method, url, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	u := fake.APIURL
	cases := []struct {
		name, method, path, body string
		status                   int
		contains                 string
	}{
		{"post creates with a generated id", "POST", "/access-keys", `{"method":"aes-192-gcm"}`, 201, `"id":"0"`},
		{"post without body", "POST", "/access-keys", ``, 201, `"method":"chacha20-ietf-poly1305"`},
		{"put creates with the chosen id", "PUT", "/access-keys/k1", `{"name":"n","method":"aes-128-gcm","password":"p","limit":{"bytes":10}}`, 201, `"dataLimit":{"bytes":10}`},
		{"put existing id", "PUT", "/access-keys/k1", `{}`, 409, `ConflictError`},
		{"bad method", "PUT", "/access-keys/k2", `{"method":"rc4-md5"}`, 400, `InvalidArgument`},
		{"method of wrong type", "PUT", "/access-keys/k2", `{"method":5}`, 400, `InvalidArgument`},
		{"bad port", "PUT", "/access-keys/k2", `{"port":70000}`, 400, `InvalidArgument`},
		{"bad limit", "PUT", "/access-keys/k2", `{"limit":{"bytes":-1}}`, 400, `InvalidArgument`},
		{"not json", "PUT", "/access-keys/k2", `{`, 400, `InvalidContent`},
		{"get key", "GET", "/access-keys/k1", ``, 200, `"password":"p"`},
		{"list", "GET", "/access-keys", ``, 200, `"accessKeys":[`},
		{"server", "GET", "/server", ``, 200, `"serverId"`},
		{"transfer", "GET", "/metrics/transfer", ``, 200, `"bytesTransferredByUserId":{}`},
		{"delete", "DELETE", "/access-keys/k1", ``, 204, ``},
		{"delete missing", "DELETE", "/access-keys/k1", ``, 404, `NotFoundError`},
		{"unknown path", "GET", "/nope", ``, 404, `ResourceNotFound`},
		{"wrong method", "PATCH", "/server", ``, 405, `MethodNotAllowed`},
	}
	for _, c := range cases {
		status, body := do(c.method, u+c.path, c.body)
		if status != c.status || !strings.Contains(body, c.contains) {
			t.Errorf("%s: %s %s = %d %s; want %d containing %q", c.name, c.method, c.path, status, body, c.status, c.contains)
		}
	}
	if status, _ := do("GET", u+"x/server", ""); status != 404 {
		t.Errorf("prefix followed by other characters: %d, want 404", status)
	}
}
