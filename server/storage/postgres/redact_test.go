package postgres

import (
	"strings"
	"testing"
)

func TestRedactDSN(t *testing.T) {
	const pw = "s3cr3t-PW"
	cases := []struct {
		name, dsn, want string
	}{
		// Nothing to redact: unchanged.
		{name: "empty", dsn: "", want: ""},
		{name: "sqlite", dsn: "sqlite", want: "sqlite"},
		{name: "url_no_password", dsn: "postgres://tokend@db:5432/tokend?sslmode=require", want: "postgres://tokend@db:5432/tokend?sslmode=require"},
		{name: "url_sslkey_path_kept", dsn: "postgres://tokend@db/tokend?sslkey=/etc/k.pem&sslcert=/etc/c.pem", want: "postgres://tokend@db/tokend?sslkey=/etc/k.pem&sslcert=/etc/c.pem"},
		{name: "keywords_no_password", dsn: "host=db user=tokend dbname=tokend sslmode=verify-full", want: "host=db user=tokend dbname=tokend sslmode=verify-full"},
		{name: "keywords_passfile_kept", dsn: "host=db passfile=/run/pgpass", want: "host=db passfile=/run/pgpass"},

		// URLs.
		{name: "url_userinfo", dsn: "postgres://tokend:" + pw + "@db:5432/tokend", want: "postgres://tokend:REDACTED@db:5432/tokend"},
		{name: "url_postgresql_scheme", dsn: "postgresql://tokend:" + pw + "@db/tokend", want: "postgresql://tokend:REDACTED@db/tokend"},
		{name: "url_upper_scheme", dsn: "POSTGRES://tokend:" + pw + "@db/tokend", want: "postgres://tokend:REDACTED@db/tokend"},
		{name: "url_userinfo_escaped", dsn: "postgres://tokend:" + "p%40ss%3Aword" + "@db/tokend", want: "postgres://tokend:REDACTED@db/tokend"},
		{name: "url_password_param", dsn: "postgres://tokend@db/tokend?sslmode=require&password=" + pw, want: "postgres://tokend@db/tokend?sslmode=require&password=REDACTED"},
		{name: "url_sslpassword_param", dsn: "postgres://tokend@db/tokend?sslpassword=" + pw + "&sslmode=verify-full", want: "postgres://tokend@db/tokend?sslpassword=REDACTED&sslmode=verify-full"},
		{name: "url_param_case", dsn: "postgres://db/tokend?SSLPassword=" + pw, want: "postgres://db/tokend?SSLPassword=REDACTED"},
		{name: "url_param_escaped_name", dsn: "postgres://db/tokend?pass%77ord=" + pw, want: "postgres://db/tokend?pass%77ord=REDACTED"},
		{name: "url_param_repeated", dsn: "postgres://db/t?password=a&password=" + pw, want: "postgres://db/t?password=REDACTED&password=REDACTED"},
		{name: "url_other_secret_params", dsn: "postgres://db/t?auth_token=" + pw + "&client_secret=" + pw + "&api_key=" + pw, want: "postgres://db/t?auth_token=REDACTED&client_secret=REDACTED&api_key=REDACTED"},
		{name: "url_everything", dsn: "postgres://u:" + pw + "@h1:5432,h2:5433/t?password=" + pw + "&sslpassword=" + pw, want: "postgres://u:REDACTED@h1:5432,h2:5433/t?password=REDACTED&sslpassword=REDACTED"},
		{name: "url_unparseable", dsn: "postgres://u:" + pw + "@db/t%zz", want: "REDACTED"},
		{name: "url_bad_param_escape", dsn: "postgres://db/t?pass%zzword=" + pw, want: "REDACTED"},

		// Keyword/value strings.
		{name: "keywords_password", dsn: "host=db user=tokend password=" + pw + " dbname=tokend", want: "host=db user=tokend password=REDACTED dbname=tokend"},
		{name: "keywords_sslpassword", dsn: "host=db sslpassword=" + pw, want: "host=db sslpassword=REDACTED"},
		{name: "keywords_spaces_around_equals", dsn: "host = db password = " + pw + "  sslmode=disable", want: "host = db password = REDACTED  sslmode=disable"},
		{name: "keywords_quoted", dsn: "host=db password='" + pw + " with spaces' user=x", want: "host=db password='REDACTED' user=x"},
		{name: "keywords_quoted_escapes", dsn: `host=db password='it\'s \\ ` + pw + `' sslpassword='` + pw + `'`, want: `host=db password='REDACTED' sslpassword='REDACTED'`},
		{name: "keywords_unquoted_escape", dsn: `password=a\ ` + pw + ` host=db`, want: `password=REDACTED host=db`},
		// As libpq and pgx read it, the password here is "host=db".
		{name: "keywords_space_after_equals", dsn: "password= host=db", want: "password= REDACTED"},
		{name: "keywords_empty_quoted", dsn: "password='' host=db", want: "password='REDACTED' host=db"},
		{name: "keywords_upper", dsn: "HOST=db PASSWORD=" + pw, want: "HOST=db PASSWORD=REDACTED"},
		{name: "keywords_tabs_newlines", dsn: "host=db\tpassword=" + pw + "\nuser=x", want: "host=db\tpassword=REDACTED\nuser=x"},
		{name: "keywords_unterminated_quote", dsn: "host=db password='" + pw, want: "REDACTED"},
		{name: "keywords_key_without_value", dsn: "host=db " + pw, want: "REDACTED"},

		// Neither form, but might hold a secret.
		{name: "other_with_at", dsn: "tokend:" + pw + "@db", want: "REDACTED"},
		{name: "other_url_scheme", dsn: "mysql://u:" + pw + "@db/t", want: "REDACTED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := RedactDSN(tc.dsn)
			if got != tc.want {
				t.Errorf("RedactDSN(%q) = %q, want %q", tc.dsn, got, tc.want)
			}
			if strings.Contains(got, pw) || strings.Contains(got, "p%40ss") {
				t.Errorf("RedactDSN(%q) = %q still holds the secret", tc.dsn, got)
			}
		})
	}
}

func FuzzRedactDSN(f *testing.F) {
	for _, s := range []string{"postgres://u:pw@db/t?sslpassword=x", "host=db password='a b' sslpassword=c", "password=x", "u:pw@db"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		got := RedactDSN(dsn)
		if got == dsn {
			return
		}
		if RedactDSN(got) != got {
			t.Errorf("RedactDSN(RedactDSN(%q)) = %q, want the first result %q", dsn, RedactDSN(got), got)
		}
	})
}
