package main

import "github.com/httvps/httvps/client"

// nativeTunnel builds the native tunnel transport; nil while this build
// has none (connect then uses the Outline paths unless -transport native
// was asked for).
var nativeTunnel client.NativeFunc
