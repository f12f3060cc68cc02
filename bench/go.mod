module github.com/tokend/tokend/bench

go 1.26.8

replace github.com/tokend/tokend => ../

require (
	github.com/tokend/tokend v0.0.0-00010101000000-000000000000
	github.com/twilio/twilio-go v1.31.0
	google.golang.org/grpc v1.85.0
)

require (
	github.com/golang-jwt/jwt/v5 v5.3.1 // indirect
	github.com/grpc-ecosystem/grpc-gateway/v2 v2.34.0 // indirect
	github.com/segmentio/asm v1.2.1 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.44.0 // indirect
	google.golang.org/genproto/googleapis/api v0.0.0-20261110000943-09e21b237f2c // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20261110000943-09e21b237f2c // indirect
	google.golang.org/protobuf v1.36.13-0.20261016172727-e9ee2a76ab8e // indirect
)
