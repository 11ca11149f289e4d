"""optin-pages: signup pages for ProTexting SMS keyword campaigns."""
