module github.com/httvps/httvps/tools/outline-ss-server

go 1.26.8

require (
	github.com/Jigsaw-Code/outline-sdk v0.0.18-0.20241106233708-faffebb12629
	github.com/Jigsaw-Code/outline-sdk/x v0.0.2-0.20250304133713-52f1a365e5ed
	github.com/Jigsaw-Code/outline-ss-server v1.9.2
	github.com/gorilla/handlers v1.4.1
)

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/shadowsocks/go-shadowsocks2 v0.1.5 // indirect
	golang.org/x/crypto v0.32.0 // indirect
	golang.org/x/sys v0.29.0 // indirect
)
