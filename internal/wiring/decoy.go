package wiring

import (
	"flag"
	"fmt"

	"github.com/httvps/httvps/internal/nginxdecoy"
)

// maxDecoySize bounds -decoy-file.
const maxDecoySize = 1 << 20

// Decoy is the answer strangers get (internal/nginxdecoy), one option set
// for the gateways and the control API so that a fleet answers alike.
type Decoy struct {
	DecoyFile   string
	DecoyStatus int
	DecoyBody   []byte // read from DecoyFile by ReadDecoy
}

// RegisterDecoy defines -decoy-file and -decoy-status; what says which
// requests get the decoy, for the help text.
func (d *Decoy) RegisterDecoy(fs *flag.FlagSet, what string) {
	fs.StringVar(&d.DecoyFile, "decoy-file", "", "HTML `file` served to "+what+" (default: an nginx-like 404 page)")
	fs.IntVar(&d.DecoyStatus, "decoy-status", 0, "HTTP status of the decoy answer: 200, or a 4xx/5xx that nginx has a reason phrase and page for (0 = 404)")
}

// CheckDecoy reports a -decoy-status the decoy cannot give.
func (d *Decoy) CheckDecoy() error {
	if d.DecoyStatus != 0 && !nginxdecoy.StatusValid(d.DecoyStatus) {
		return fmt.Errorf("-decoy-status: %d is not 200 or a 4xx/5xx status nginx has a page for", d.DecoyStatus)
	}
	return nil
}

// ReadDecoy reads -decoy-file, if given, into DecoyBody.
func (d *Decoy) ReadDecoy(readFile func(string) ([]byte, error)) error {
	if d.DecoyFile == "" {
		return nil
	}
	var err error
	if d.DecoyBody, err = readFile(d.DecoyFile); err != nil {
		return fmt.Errorf("-decoy-file: %w", err)
	}
	if len(d.DecoyBody) > maxDecoySize {
		return fmt.Errorf("-decoy-file %s: %d bytes, more than %d", d.DecoyFile, len(d.DecoyBody), maxDecoySize)
	}
	return nil
}

// DecoyConfig is the set as the emulation takes it.
func (d *Decoy) DecoyConfig() nginxdecoy.Config {
	return nginxdecoy.Config{Status: d.DecoyStatus, Body: d.DecoyBody}
}
