"""The web app (the [app] extra): draw a digit and see what each model thinks; train, watch and
compare runs from the browser.

``logic`` holds everything that can be tested without a browser (canvas pixels -> what the model
sees, form values -> a validated Config, starting, stopping and watching runs as separate
processes, reading run directories); ``views`` holds the Streamlit pages, thin over it; ``main`` is
the script ``streamlit run`` executes; ``serve`` builds that command for ``mlp-lab app``. Only
``views`` and ``main`` import streamlit.
"""
