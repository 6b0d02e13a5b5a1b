package gateway

// Exported surface (implemented in server.go):
//
//	func New(cfg Config) (*Gateway, error)
//	func (g *Gateway) Serve(ln net.Listener) error   // blocks until Shutdown; ln is taken over
//	func (g *Gateway) ListenAndServe(addr string) error
//	func (g *Gateway) Shutdown(ctx context.Context) error // stop accepting, close 1001, wait, force
//	func (g *Gateway) Ready() bool                  // serving and not draining
//	func (g *Gateway) Sessions() int                // live established sessions
//	func (g *Gateway) Addr() net.Addr               // listener address once serving
