"""The web app (the [app] extra): draw a digit and see what each model thinks; train, watch and
compare runs from the browser.

One plain module per job, tested without a browser: ``drawing`` (canvas pixels and uploads ->
what the model sees and thinks), ``models`` (the models the Draw page offers, and which it opens on), ``form`` (the Train
form -> a validated Config, its choices from the schema), ``training`` (runs started, stopped,
resumed and watched as separate processes), ``launched`` (the app's records of what it started),
``runs`` (run directories as the app lists them, and which are training now), ``studies`` (study
reports). Over them, one Streamlit module per page (``draw_page``, ``train_page``, ``runs_page``,
``mlflow_page``: the MLflow UI that ``mlp-lab app --mlflow`` serves, framed), ``widgets`` (what the pages share), ``views`` (the page picker), ``canvas`` (the drawing canvas,
a components-v2 element), ``main`` (the script ``streamlit run`` executes) and ``serve`` (the
command behind ``mlp-lab app``). Only the pages, ``widgets``, ``views``, ``canvas`` and ``main``
import streamlit.
"""
