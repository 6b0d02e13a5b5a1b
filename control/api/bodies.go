package api

import "github.com/httvps/httvps/control/api/wire"

// The API's JSON bodies are defined in package wire, which the `httvps
// admin` client decodes with; these short names keep the handlers readable.
type (
	accessKeys      = wire.AccessKeys
	assignmentView  = wire.AssignmentView
	bucketView      = wire.BucketView
	periodView      = wire.PeriodView
	usageHistory    = wire.UsageHistory
	clientConfig    = wire.ClientConfig
	createdToken    = wire.CreatedToken
	gatewayList     = wire.GatewayList
	gatewayView     = wire.GatewayView
	healthView      = wire.HealthView
	memberList      = wire.MemberList
	memberView      = wire.MemberView
	outlineConfig   = wire.OutlineConfig
	ssManagerConfig = wire.SSManagerConfig
	staticConfig    = wire.StaticConfig
	tokenList       = wire.TokenList
	tokenView       = wire.TokenView
	usageView       = wire.UsageView
)
