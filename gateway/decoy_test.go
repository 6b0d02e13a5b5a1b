package gateway

import "testing"

// The gateway takes nginx's statuses for DecoyStatus and nothing else
// (internal/nginxdecoy tests the pages themselves).
func TestDecoyStatusChecked(t *testing.T) {
	for code, ok := range map[int]bool{0: false, 200: true, 299: false, 404: true, 405: true, 418: false, 503: true} {
		if DecoyStatusValid(code) != ok {
			t.Errorf("DecoyStatusValid(%d) = %v", code, !ok)
		}
	}
	auth, err := NewStaticAuth(map[string]string{"s": "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Auth: auth, DecoyStatus: 299}); err == nil {
		t.Error("New accepted DecoyStatus 299")
	}
}
